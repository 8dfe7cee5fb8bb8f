"""Sliding-window attention: blocked fast path == [T, T] windowed reference, rolling-cache streaming."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from linmix.mixers import MIXERS, build_mixer, mixer_options
from linmix.mixers.local_attention import LocalAttention

D, H = 8, 2


def make(causal: bool, window: int = 3, max_len: int = 16, dtype: torch.dtype = torch.float64) -> LocalAttention:
    torch.manual_seed(0)
    m = build_mixer("local_attention", d_model=D, max_len=max_len, causal=causal, window=window, n_heads=H)
    return m.to(dtype)


def ragged_mask(B: int, T: int) -> torch.Tensor:
    """Row 0 right-padded, row 1 left-padded, row 2 (if any) fully real."""
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, T // 2 + 1:] = False
    if B > 1:
        mask[1, : T // 3] = False
    return mask


def grads(m: torch.nn.Module, fn, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_(True)
    out = fn(x)
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    return list(torch.autograd.grad((out * weight).sum(), [x, *m.parameters()]))


def test_registered_with_window_and_heads() -> None:
    assert "local_attention" in MIXERS
    assert mixer_options("local_attention") == {"window", "n_heads"}


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("window,T", [(1, 5), (3, 7), (3, 9), (4, 1), (8, 5)])
def test_fast_matches_reference(causal: bool, window: int, T: int) -> None:
    """T multiple and not multiple of the window, T = 1, window larger than T, window 1."""
    m = make(causal, window)
    x = torch.randn(3, T, D, dtype=torch.float64)
    for mask in (None, ragged_mask(3, T)):
        torch.testing.assert_close(m(x, mask), m.reference(x, mask), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("causal", [True, False])
def test_fast_matches_reference_backward(causal: bool) -> None:
    m = make(causal, window=3)
    x = torch.randn(3, 8, D, dtype=torch.float64)
    mask = ragged_mask(3, 8)
    for g_fast, g_ref in zip(grads(m, lambda t: m(t, mask), x), grads(m, lambda t: m.reference(t, mask), x)):
        torch.testing.assert_close(g_fast, g_ref, atol=1e-10, rtol=1e-10)


def test_reference_window_is_the_documented_one() -> None:
    causal, bidir = make(True, window=3).allowed_pairs(6, "cpu"), make(False, window=3).allowed_pairs(6, "cpu")
    t, s = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    assert torch.equal(causal, (t - 3 < s) & (s <= t))
    assert torch.equal(bidir, (t - s).abs() < 3)


@pytest.mark.parametrize("causal", [True, False])
def test_gradcheck(causal: bool) -> None:
    torch.manual_seed(0)
    m = build_mixer("local_attention", d_model=4, max_len=8, causal=causal, window=2, n_heads=2).double()
    x = torch.randn(1, 5, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, True, False]])
    assert torch.autograd.gradcheck(lambda t: m(t, mask), (x,))


def test_window_covering_the_sequence_equals_full_attention() -> None:
    for causal in (True, False):
        local = make(causal, window=16)
        full = build_mixer("attention", d_model=D, max_len=16, causal=causal, n_heads=H).double()
        full.load_state_dict(local.state_dict())
        x = torch.randn(2, 9, D, dtype=torch.float64)
        mask = ragged_mask(2, 9)
        torch.testing.assert_close(local(x, mask), full(x, mask), atol=1e-12, rtol=0)


def test_window_one_sees_only_itself() -> None:
    for causal in (True, False):
        m = make(causal, window=1)
        x = torch.randn(1, 5, D, dtype=torch.float64)
        _, _, v = m.heads(x)
        torch.testing.assert_close(m(x), m.merge(v), atol=1e-12, rtol=0)


def test_never_builds_a_t_by_t_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every score block the kernel sees is at most [window, 3 * window], whatever T."""
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


def test_causal_never_reads_the_future() -> None:
    m = make(True, window=3)
    T = 8
    x = torch.randn(2, T, D, dtype=torch.float64)
    y = m(x)
    for t in range(T - 1):
        x2 = x.clone()
        x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:]) * 10
        torch.testing.assert_close(m(x2)[:, : t + 1], y[:, : t + 1], atol=1e-12, rtol=0)


def test_outside_the_window_has_no_influence() -> None:
    for causal in (True, False):
        m = make(causal, window=3)
        x = torch.randn(1, 10, D, dtype=torch.float64)
        x2 = x.clone()
        x2[:, 0] += 5.0
        changed = (m(x2) - m(x)).abs().amax(-1)[0] > 0
        assert changed[:3].all() and not changed[3:].any()


@pytest.mark.parametrize("window", [1, 3, 20])
def test_step_matches_parallel_with_a_rolling_cache(window: int) -> None:
    m = make(True, window=window, dtype=torch.float32)
    x = torch.randn(2, 13, D)
    with torch.no_grad():
        y = m(x)
        state = m.init_state(2)
        for t in range(x.shape[1]):
            y_t, state = m.step(x[:, t], state)
            torch.testing.assert_close(y_t, y[:, t], atol=1e-5, rtol=1e-5)
    assert state["k"].shape == (2, H, min(window, 16), D // H)


@pytest.mark.parametrize("prompt", [2, 7])
def test_prefill_then_step_matches_parallel(prompt: int) -> None:
    m = make(True, window=3, dtype=torch.float32)
    x = torch.randn(2, 12, D)
    with torch.no_grad():
        y = m(x)
        y_prompt, state = m.prefill(x[:, :prompt])
        torch.testing.assert_close(y_prompt, y[:, :prompt], atol=1e-5, rtol=1e-5)
        for t in range(prompt, 12):
            y_t, state = m.step(x[:, t], state)
            torch.testing.assert_close(y_t, y[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_padded_content_never_reaches_real_positions(causal: bool) -> None:
    m = make(causal, window=3)
    x = torch.randn(2, 10, D, dtype=torch.float64)
    mask = ragged_mask(2, 10)
    x2 = torch.where(mask.unsqueeze(-1), x, torch.randn_like(x) * 100)
    y = m(x, mask)
    torch.testing.assert_close(m(x2, mask), y, atol=1e-12, rtol=0)
    assert not y.isnan().any() and (y[~mask] == 0).all()


@pytest.mark.parametrize("causal", [True, False])
def test_padded_run_equals_unpadded_run(causal: bool) -> None:
    m = make(causal, window=3)
    x = torch.randn(1, 10, D, dtype=torch.float64)
    right = torch.tensor([[True] * 6 + [False] * 4])
    torch.testing.assert_close(m(x, right)[:, :6], m(x[:, :6]), atol=1e-12, rtol=0)
    left = torch.tensor([[False] * 4 + [True] * 6])
    torch.testing.assert_close(m(x, left)[:, 4:], m(x[:, 4:]), atol=1e-12, rtol=0)


def test_fully_padded_sequence_gives_zeros_and_finite_grads() -> None:
    m = make(True, window=2)
    x = torch.randn(2, 5, D, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0] = False
    y = m(x, mask)
    assert (y[0] == 0).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("causal", [True, False])
def test_float32_and_bfloat16_forward(causal: bool) -> None:
    x = torch.randn(2, 7, D)
    y32 = make(causal, dtype=torch.float32)(x, ragged_mask(2, 7))
    y16 = make(causal, dtype=torch.bfloat16)(x.bfloat16(), ragged_mask(2, 7))
    assert y16.dtype == torch.bfloat16 and torch.isfinite(y16).all()
    torch.testing.assert_close(y16.float(), y32, atol=0.1, rtol=0.1)


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match="divisible by n_heads"):
        build_mixer("local_attention", d_model=10, max_len=8, causal=True, n_heads=4)
    for window in (0, -2, 2.5):
        with pytest.raises(ValueError, match="window must be a positive integer"):
            build_mixer("local_attention", d_model=8, max_len=8, causal=True, window=window)
    with pytest.raises(ValueError, match="exceeds max_len"):
        make(True, max_len=4)(torch.randn(1, 5, D, dtype=torch.float64))
    with pytest.raises(NotImplementedError):
        make(False).init_state(1)
    with pytest.raises(ValueError, match="causal=True"):
        make(False).step(torch.randn(1, D, dtype=torch.float64), {"pos": 0})
