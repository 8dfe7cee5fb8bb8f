"""Topological mixer specifics: block alignment against the per-position loop, the exact reach, block-edge
streaming, option errors. The contract (shapes, causality, padding, streaming, errors) runs in test_registry.py.
"""
import pytest
import torch

from linmix.mixers import build_mixer

from .mixer_contract import assert_fast_equals_reference

D, MAX_LEN = 8, 24
# (stride, kernel_size): the default 2*stride, kernel == stride, and an odd halo (bidirectional L = 1)
GEOMETRIES = [(4, None), (3, 3), (3, 5)]


def make(causal: bool, stride: int = 4, kernel_size: int | None = None, dtype=torch.float64):
    torch.manual_seed(0)
    m = build_mixer("topological", d_model=D, max_len=MAX_LEN, causal=causal, n_heads=2,
                    stride=stride, kernel_size=kernel_size)
    return m.to(dtype)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("stride,kernel_size", GEOMETRIES)
@pytest.mark.parametrize("T", [3, 4, 7, 12])
def test_conv_path_matches_the_loop_at_block_edges(causal, stride, kernel_size, T):
    """T shorter than a block, one block, a partial last block, whole blocks."""
    assert_fast_equals_reference(make(causal, stride, kernel_size), T, masked=False)


def _influence(m, x: torch.Tensor) -> list[set[int]]:
    """For each output position t, the input positions whose content changes it (one batched probe each)."""
    T = x.shape[1]
    probes = x.repeat(T + 1, 1, 1)
    probes[torch.arange(1, T + 1), torch.arange(T)] += 10.0  # probe i + 1 perturbs position i only
    y = m(probes)
    changed = (y[1:] - y[:1]).abs().amax(-1) > 1e-12  # [perturbed position i, output t]
    return [set(changed[:, t].nonzero().flatten().tolist()) for t in range(T)]


@pytest.mark.parametrize("stride,kernel_size", GEOMETRIES)
def test_causal_reach_is_own_token_plus_previous_block_window(stride, kernel_size):
    m = make(True, stride, kernel_size)
    K = kernel_size or 2 * stride
    T = 13
    x = torch.randn(1, T, D, dtype=torch.float64)
    reach = _influence(m, x)
    for t in range(T):
        j = t // stride
        window = set(range(max(j * stride - K, 0), j * stride))
        assert reach[t] == window | {t}, f"position {t}"


@pytest.mark.parametrize("stride,kernel_size", GEOMETRIES)
def test_bidirectional_reach_is_own_token_plus_block_window(stride, kernel_size):
    m = make(False, stride, kernel_size)
    K = kernel_size or 2 * stride
    left = (K - stride) // 2
    T = 13
    x = torch.randn(1, T, D, dtype=torch.float64)
    reach = _influence(m, x)
    for t in range(T):
        start = (t // stride) * stride - left
        window = {i for i in range(start, start + K) if 0 <= i < T}
        assert reach[t] == window | {t}, f"position {t}"


@pytest.mark.parametrize("stride,kernel_size", GEOMETRIES)
def test_prefill_then_step_matches_parallel_at_block_edges(stride, kernel_size):
    m = make(True, stride, kernel_size)
    T = 13  # not a multiple of any stride used
    x = torch.randn(3, T, D, dtype=torch.float64)
    y = m(x)
    for split in (stride - 1, stride, 2 * stride + 1):
        y_pre, state = m.prefill(x[:, :split])
        torch.testing.assert_close(y_pre, y[:, :split], atol=1e-10, rtol=1e-10)
        for t in range(split, T):
            y_t, state = m.step(x[:, t], state)
            torch.testing.assert_close(y_t, y[:, t], atol=1e-10, rtol=1e-10)


def test_option_errors():
    with pytest.raises(ValueError, match="even size"):
        build_mixer("topological", d_model=6, max_len=8, causal=True, n_heads=2)
    with pytest.raises(ValueError, match="kernel_size=2 must be >= stride=4"):
        build_mixer("topological", d_model=8, max_len=8, causal=True, n_heads=2, kernel_size=2)
