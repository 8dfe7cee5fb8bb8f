"""Sliding-window attention specifics: the exact window, blocked kernel shapes, the rolling cache, errors.

The contract (shapes, fast == reference, causality, padding, streaming, errors) runs in test_registry.py.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from linmix.mixers import build_mixer
from linmix.mixers.local_attention import LocalAttention

from .mixer_contract import assert_fast_equals_reference

D, H = 8, 2


def make(causal: bool, window: int = 3, max_len: int = 16) -> LocalAttention:
    torch.manual_seed(0)
    return build_mixer("local_attention", d_model=D, max_len=max_len, causal=causal, window=window,
                       n_heads=H).double()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("window,T", [(1, 5), (3, 7), (3, 9), (4, 1), (8, 5)])
def test_blocked_form_matches_the_reference_at_block_edges(causal: bool, window: int, T: int) -> None:
    """T a multiple of the window or not, T = 1, a window longer than T, window 1."""
    assert_fast_equals_reference(make(causal, window), T)


def test_reference_window_is_the_documented_one() -> None:
    causal, bidir = make(True).allowed_pairs(6, "cpu"), make(False).allowed_pairs(6, "cpu")
    t, s = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    assert torch.equal(causal, (t - 3 < s) & (s <= t))
    assert torch.equal(bidir, (t - s).abs() < 3)


@pytest.mark.parametrize("causal", [True, False])
def test_window_covering_the_sequence_equals_full_attention(causal: bool) -> None:
    local = make(causal, window=16)
    full = build_mixer("attention", d_model=D, max_len=16, causal=causal, n_heads=H).double()
    full.load_state_dict(local.state_dict())
    x = torch.randn(2, 9, D, dtype=torch.float64)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 6:] = False
    torch.testing.assert_close(local(x, mask), full(x, mask), atol=1e-12, rtol=0)


@pytest.mark.parametrize("causal", [True, False])
def test_window_one_sees_only_itself(causal: bool) -> None:
    m = make(causal, window=1)
    x = torch.randn(1, 5, D, dtype=torch.float64)
    _, _, v = m.heads(x)
    torch.testing.assert_close(m(x), m.merge(v), atol=1e-12, rtol=0)


@pytest.mark.parametrize("causal", [True, False])
def test_outside_the_window_has_no_influence(causal: bool) -> None:
    m = make(causal, window=3)
    x = torch.randn(1, 10, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 0] += 5.0
    changed = (m(x2) - m(x)).abs().amax(-1)[0] > 0
    assert changed[:3].all() and not changed[3:].any()


def test_never_builds_a_t_by_t_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every score block the kernel sees is [window, 2 window] (causal) or [window, 3 window], whatever T."""
    shapes = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        shapes.append((q.shape[-2], k.shape[-2], tuple(attn_mask.shape)))
        return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    for causal, width in ((True, 8), (False, 12)):
        x, mask = torch.randn(1, 64, D, dtype=torch.float64), torch.ones(1, 64, dtype=torch.bool)
        make(causal, window=4, max_len=64)(x, mask)
        assert shapes[-1][:2] == (4, width) and shapes[-1][2][-2:] == (4, width)


@pytest.mark.parametrize("window", [1, 3, 20])
def test_rolling_cache_is_bounded_by_the_window(window: int) -> None:
    m = make(True, window=window)
    with torch.no_grad():
        _, state = m.prefill(torch.randn(2, 13, D, dtype=torch.float64))
    assert state.k.shape == (2, H, min(window, 16), D // H)


def test_rolling_cache_past_max_len_stays_bounded_by_the_window() -> None:
    """window 20 > max_len 16: the cache grows to the window, then rolls; step == parallel over 60 tokens."""
    m = make(True, window=20)
    assert m.length_free
    x = torch.randn(2, 60, D, dtype=torch.float64)
    with torch.no_grad():
        y_pre, state = m.prefill(x[:, :10])
        ys = [y_pre]
        for t in range(10, 60):
            y_t, state = m.step(x[:, t], state)
            ys.append(y_t.unsqueeze(1))
            assert state.k.shape[2] == (16 if t < 16 else 20)
    torch.testing.assert_close(torch.cat(ys, 1), m(x), rtol=1e-10, atol=1e-10)


def test_window_errors() -> None:
    for window in (0, -2, 2.5):
        with pytest.raises(ValueError, match="window must be a positive integer"):
            build_mixer("local_attention", d_model=8, max_len=8, causal=True, window=window)
