"""Softmax attention specifics: the KV cache, differentiable decoding, position-free padding, head errors.

The contract (shapes, fast == reference, causality, padding, streaming, errors) runs in test_registry.py.
"""
from __future__ import annotations

import pytest
import torch

from linmix.mixers import build_mixer
from linmix.mixers.attention import KVState

D, H = 8, 2


def make(name: str = "attention", causal: bool = True, max_len: int = 16, **opts) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_mixer(name, d_model=D, max_len=max_len, causal=causal, n_heads=H, **opts).double()


def test_kv_cache_holds_max_len_positions() -> None:
    m = make()
    with torch.no_grad():
        _, state = m.prefill(torch.randn(2, 5, D, dtype=torch.float64))
    assert isinstance(state, KVState) and state.pos == 5
    assert state.k.shape == state.v.shape == (2, H, 16, D // H)
    assert state.nbytes() == 2 * 2 * H * 16 * (D // H) * 8


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
