"""Softmax attention specifics: the growing KV cache, differentiable decoding, position-free padding, head errors.

The contract (shapes, fast == reference, causality, padding, streaming, errors) runs in test_registry.py.
"""
from __future__ import annotations

import pytest
import torch

from linmix.mixers import build_mixer
from linmix.mixers.attention import INITIAL_CACHE_LEN, KVState

from .mixer_contract import stream

D, H = 8, 2


def make(name: str = "attention", causal: bool = True, max_len: int = 16, **opts) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_mixer(name, d_model=D, max_len=max_len, causal=causal, n_heads=H, **opts).double()


def test_kv_cache_starts_at_min_of_max_len_and_the_initial_capacity() -> None:
    m = make()
    with torch.no_grad():
        _, state = m.prefill(torch.randn(2, 5, D, dtype=torch.float64))
    assert isinstance(state, KVState) and state.pos == 5
    assert state.k.shape == state.v.shape == (2, H, 16, D // H)
    assert state.nbytes() == 2 * 2 * H * 16 * (D // H) * 8
    assert make(max_len=10_000).init_state(1).k.shape[2] == INITIAL_CACHE_LEN


@pytest.mark.parametrize("rotary", [False, True])
@pytest.mark.parametrize("split", [0, 3, 20])
def test_kv_cache_doubles_past_its_capacity_and_past_max_len(rotary: bool, split: int) -> None:
    """max_len=4: the cache starts at 4 slots and doubles (8, 16, ..., 128) while step keeps equal to the
    parallel form over 100 tokens, far past max_len."""
    m = make(max_len=4, rotary=rotary)
    assert m.length_free
    x = torch.randn(2, 100, D, dtype=torch.float64)
    with torch.no_grad():
        y_pre, state = m.prefill(x[:, :split]) if split else (x[:, :0], m.init_state(2))
    capacities = [state.k.shape[2]]
    ys = [y_pre]
    for t in range(split, 100):
        y_t, state = stream(m, x[:, t : t + 1], state)
        ys.append(y_t)
        capacities.append(state.k.shape[2])
    torch.testing.assert_close(torch.cat(ys, 1), m(x), rtol=1e-10, atol=1e-10)
    assert capacities[-1] == 128 and state.pos == 100
    grown = sorted(set(capacities))
    assert all(b == 2 * a for a, b in zip(grown, grown[1:]))  # doubling only


def test_growing_the_cache_keeps_step_differentiable() -> None:
    m = make(max_len=2)
    x = torch.randn(1, 9, D, dtype=torch.float64, requires_grad=True)
    state = m.init_state(1)
    ys = []
    for t in range(9):
        y_t, state = m.step(x[:, t], state)
        ys.append(y_t)
    assert state.k.shape[2] == 16
    (g_step,) = torch.autograd.grad(torch.stack(ys, 1).square().sum(), x)
    (g_par,) = torch.autograd.grad(m(x).square().sum(), x)
    torch.testing.assert_close(g_step, g_par)


def test_step_is_differentiable_when_autograd_records() -> None:
    """With autograd on, the cache is written out of place, so earlier steps' saved tensors stay valid."""
    m = make()
    x = torch.randn(1, 4, D, dtype=torch.float64, requires_grad=True)
    state = m.init_state(1)
    ys = []
    for t in range(4):
        y_t, state = m.step(x[:, t], state)
        ys.append(y_t)
    (g_step,) = torch.autograd.grad(torch.stack(ys, 1).square().sum(), x)
    (g_par,) = torch.autograd.grad(m(x).square().sum(), x)
    torch.testing.assert_close(g_step, g_par)


def test_bidirectional_reads_the_future() -> None:
    m = make(causal=False)
    x = torch.randn(1, 5, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert not torch.allclose(m(x)[:, 0], m(x2)[:, 0])


@pytest.mark.parametrize("name", ["attention", "local_attention", "linear_attention"])
@pytest.mark.parametrize("causal", [True, False])
def test_left_padding_equals_the_unpadded_run(name: str, causal: bool) -> None:
    """These mixers have no positions: a left-padded sequence gives the unpadded run's outputs."""
    m = make(name, causal)
    x = torch.randn(1, 9, D, dtype=torch.float64)
    left = torch.tensor([[False] * 4 + [True] * 5])
    torch.testing.assert_close(m(x, left)[:, 4:], m(x[:, 4:]), atol=1e-12, rtol=0)


def test_head_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="divisible by n_heads=4; pick n_heads from"):
        build_mixer("attention", d_model=10, max_len=8, causal=True, n_heads=4)
    with pytest.raises(ValueError, match="n_heads must be a positive integer"):
        build_mixer("attention", d_model=8, max_len=8, causal=True, n_heads=0)
