"""Multi-head softmax attention: fast path == [T, T] reference, causality, KV-cache streaming, padding."""
from __future__ import annotations

import pytest
import torch

from linmix.mixers import MIXERS, build_mixer, mixer_options
from linmix.mixers.attention import Attention

D, H = 8, 2


def make(causal: bool, max_len: int = 16, dtype: torch.dtype = torch.float64, **opts) -> Attention:
    torch.manual_seed(0)
    return build_mixer("attention", d_model=D, max_len=max_len, causal=causal, n_heads=H, **opts).to(dtype)


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


def test_registered_with_heads_option() -> None:
    assert "attention" in MIXERS
    assert mixer_options("attention") == {"n_heads"}


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("T", [1, 7])
def test_fast_matches_reference_forward_and_backward(causal: bool, masked: bool, T: int) -> None:
    m = make(causal)
    x = torch.randn(3, T, D, dtype=torch.float64)
    mask = ragged_mask(3, T) if masked else None
    torch.testing.assert_close(m(x, mask), m.reference(x, mask), atol=1e-10, rtol=1e-10)
    for g_fast, g_ref in zip(grads(m, lambda t: m(t, mask), x), grads(m, lambda t: m.reference(t, mask), x)):
        torch.testing.assert_close(g_fast, g_ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("causal", [True, False])
def test_gradcheck(causal: bool) -> None:
    torch.manual_seed(0)
    m = build_mixer("attention", d_model=4, max_len=4, causal=causal, n_heads=2).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, False]])
    assert torch.autograd.gradcheck(lambda t: m(t), (x,))
    assert torch.autograd.gradcheck(lambda t: m(t, mask), (x,))


@pytest.mark.parametrize("masked", [False, True])
def test_causal_never_reads_the_future(masked: bool) -> None:
    m = make(True)
    T = 8
    x = torch.randn(2, T, D, dtype=torch.float64)
    mask = torch.ones(2, T, dtype=torch.bool) if masked else None
    y = m(x, mask)
    for t in range(T - 1):
        x2 = x.clone()
        x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:]) * 10
        torch.testing.assert_close(m(x2, mask)[:, : t + 1], y[:, : t + 1], atol=1e-12, rtol=0)


def test_bidirectional_reads_the_future() -> None:
    m = make(False)
    x = torch.randn(1, 5, D, dtype=torch.float64)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert not torch.allclose(m(x)[:, 0], m(x2)[:, 0])


def test_step_matches_parallel_at_every_position() -> None:
    m = make(True, dtype=torch.float32)
    x = torch.randn(2, 11, D)
    with torch.no_grad():
        y = m(x)
        state = m.init_state(2)
        for t in range(x.shape[1]):
            y_t, state = m.step(x[:, t], state)
            torch.testing.assert_close(y_t, y[:, t], atol=1e-5, rtol=1e-5)
    assert state["k"].shape == (2, H, 16, D // H)


def test_prefill_then_step_matches_parallel() -> None:
    m = make(True, dtype=torch.float32)
    x = torch.randn(2, 10, D)
    with torch.no_grad():
        y = m(x)
        y_prompt, state = m.prefill(x[:, :6])
        torch.testing.assert_close(y_prompt, y[:, :6], atol=1e-5, rtol=1e-5)
        for t in range(6, 10):
            y_t, state = m.step(x[:, t], state)
            torch.testing.assert_close(y_t, y[:, t], atol=1e-5, rtol=1e-5)


def test_step_is_differentiable_when_autograd_records() -> None:
    m = make(True)
    x = torch.randn(1, 4, D, dtype=torch.float64, requires_grad=True)
    state = m.init_state(1)
    ys = []
    for t in range(4):
        y_t, state = m.step(x[:, t], state)
        ys.append(y_t)
    (g_step,) = torch.autograd.grad(torch.stack(ys, 1).square().sum(), x)
    (g_par,) = torch.autograd.grad(m(x).square().sum(), x)
    torch.testing.assert_close(g_step, g_par)


@pytest.mark.parametrize("causal", [True, False])
def test_padded_content_never_reaches_real_positions(causal: bool) -> None:
    m = make(causal)
    x = torch.randn(2, 9, D, dtype=torch.float64)
    mask = ragged_mask(2, 9)
    x2 = torch.where(mask.unsqueeze(-1), x, torch.randn_like(x) * 100)
    y, y2 = m(x, mask), m(x2, mask)
    torch.testing.assert_close(y2, y, atol=1e-12, rtol=0)
    assert not y.isnan().any()
    assert (y[~mask] == 0).all()


@pytest.mark.parametrize("causal", [True, False])
def test_padded_run_equals_unpadded_run(causal: bool) -> None:
    m = make(causal)
    x = torch.randn(1, 9, D, dtype=torch.float64)
    right = torch.tensor([[True] * 5 + [False] * 4])
    torch.testing.assert_close(m(x, right)[:, :5], m(x[:, :5]), atol=1e-12, rtol=0)
    left = torch.tensor([[False] * 4 + [True] * 5])
    torch.testing.assert_close(m(x, left)[:, 4:], m(x[:, 4:]), atol=1e-12, rtol=0)


def test_fully_padded_sequence_gives_zeros_and_finite_grads() -> None:
    m = make(True)
    x = torch.randn(2, 5, D, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[0] = False
    y = m(x, mask)
    assert (y[0] == 0).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("causal", [True, False])
def test_float32_and_bfloat16_forward(causal: bool) -> None:
    x = torch.randn(2, 6, D)
    y32 = make(causal, dtype=torch.float32)(x, ragged_mask(2, 6))
    y16 = make(causal, dtype=torch.bfloat16)(x.bfloat16(), ragged_mask(2, 6))
    assert y16.dtype == torch.bfloat16 and torch.isfinite(y16).all()
    torch.testing.assert_close(y16.float(), y32, atol=0.1, rtol=0.1)


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match="divisible by n_heads"):
        build_mixer("attention", d_model=10, max_len=8, causal=True, n_heads=4)
    with pytest.raises(ValueError, match="n_heads must be a positive integer"):
        build_mixer("attention", d_model=8, max_len=8, causal=True, n_heads=0)
    m = make(True, max_len=4)
    with pytest.raises(ValueError, match="exceeds max_len"):
        m(torch.randn(1, 5, D, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[B, T, D=8\]"):
        m(torch.randn(1, 3, D + 1, dtype=torch.float64))
    state = m.init_state(1)
    with torch.no_grad():
        for _ in range(4):
            _, state = m.step(torch.randn(1, D, dtype=torch.float64), state)
        with pytest.raises(ValueError, match="max_len"):
            m.step(torch.randn(1, D, dtype=torch.float64), state)
    with pytest.raises(NotImplementedError):
        make(False).init_state(1)
