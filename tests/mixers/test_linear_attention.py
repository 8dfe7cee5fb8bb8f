"""Linear attention (elu + 1): chunked causal form == [T, T] reference, constant-size streaming state."""
from __future__ import annotations

import pytest
import torch

from linmix.mixers import MIXERS, build_mixer, mixer_options
from linmix.mixers.linear_attention import LinearAttention

D, H = 8, 2


def make(causal: bool, chunk: int = 4, max_len: int = 16, dtype: torch.dtype = torch.float64) -> LinearAttention:
    torch.manual_seed(0)
    m = build_mixer("linear_attention", d_model=D, max_len=max_len, causal=causal, n_heads=H, chunk=chunk)
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


def loop_reference(m: LinearAttention, x: torch.Tensor) -> torch.Tensor:
    """Causal form as a per-position loop over the running sums (no padding)."""
    phq, phk, v = m.features(x)
    S = torch.zeros(*phq.shape[:2], m.head_dim, m.head_dim, dtype=phq.dtype)
    z = torch.zeros(*phq.shape[:2], m.head_dim, dtype=phq.dtype)
    ys = []
    for t in range(x.shape[1]):
        S = S + phk[:, :, t, :, None] * v[:, :, t, None, :]
        z = z + phk[:, :, t]
        num = torch.einsum("bhd,bhde->bhe", phq[:, :, t], S)
        ys.append(num / ((phq[:, :, t] * z).sum(-1, keepdim=True) + m.eps))
    return m.merge(torch.stack(ys, 2), x.dtype)


def test_registered_with_heads_and_chunk() -> None:
    assert "linear_attention" in MIXERS
    assert mixer_options("linear_attention") == {"n_heads", "chunk"}


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("chunk,T", [(4, 8), (4, 7), (4, 1), (16, 5), (1, 4)])
def test_fast_matches_reference(causal: bool, chunk: int, T: int) -> None:
    """T multiple and not multiple of the chunk, T = 1, chunk larger than T, chunk 1."""
    m = make(causal, chunk)
    x = torch.randn(3, T, D, dtype=torch.float64)
    for mask in (None, ragged_mask(3, T)):
        torch.testing.assert_close(m(x, mask), m.reference(x, mask), atol=1e-10, rtol=1e-10)


def test_causal_matches_per_position_loop() -> None:
    m = make(True, chunk=3)
    x = torch.randn(2, 10, D, dtype=torch.float64)
    torch.testing.assert_close(m(x), loop_reference(m, x), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("causal", [True, False])
def test_fast_matches_reference_backward(causal: bool) -> None:
    m = make(causal, chunk=3)
    x = torch.randn(3, 8, D, dtype=torch.float64)
    mask = ragged_mask(3, 8)
    for g_fast, g_ref in zip(grads(m, lambda t: m(t, mask), x), grads(m, lambda t: m.reference(t, mask), x)):
        torch.testing.assert_close(g_fast, g_ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("causal", [True, False])
def test_gradcheck(causal: bool) -> None:
    torch.manual_seed(0)
    m = build_mixer("linear_attention", d_model=4, max_len=8, causal=causal, n_heads=2, chunk=2).double()
    x = torch.randn(1, 5, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, True, False]])
    assert torch.autograd.gradcheck(lambda t: m(t, mask), (x,))


def test_causal_never_reads_the_future() -> None:
    m = make(True, chunk=3)
    T = 8
    x = torch.randn(2, T, D, dtype=torch.float64)
    y = m(x)
    for t in range(T - 1):
        x2 = x.clone()
        x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:]) * 10
        torch.testing.assert_close(m(x2)[:, : t + 1], y[:, : t + 1], atol=1e-12, rtol=0)


def test_step_matches_parallel_with_constant_state() -> None:
    m = make(True, chunk=4, dtype=torch.float32)
    x = torch.randn(2, 13, D)
    with torch.no_grad():
        y = m(x)
        state = m.init_state(2)
        for t in range(x.shape[1]):
            y_t, state = m.step(x[:, t], state)
            torch.testing.assert_close(y_t, y[:, t], atol=1e-5, rtol=1e-5)
            assert state["S"].shape == (2, H, D // H, D // H) and state["z"].shape == (2, H, D // H)


@pytest.mark.parametrize("prompt", [1, 6])
def test_prefill_then_step_matches_parallel(prompt: int) -> None:
    m = make(True, chunk=4, dtype=torch.float32)
    x = torch.randn(2, 11, D)
    with torch.no_grad():
        y = m(x)
        y_prompt, state = m.prefill(x[:, :prompt])
        torch.testing.assert_close(y_prompt, y[:, :prompt], atol=1e-5, rtol=1e-5)
        for t in range(prompt, 11):
            y_t, state = m.step(x[:, t], state)
            torch.testing.assert_close(y_t, y[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_padded_content_never_reaches_real_positions(causal: bool) -> None:
    m = make(causal, chunk=4)
    x = torch.randn(2, 10, D, dtype=torch.float64)
    mask = ragged_mask(2, 10)
    x2 = torch.where(mask.unsqueeze(-1), x, torch.randn_like(x) * 100)
    y = m(x, mask)
    torch.testing.assert_close(m(x2, mask), y, atol=1e-12, rtol=0)
    assert not y.isnan().any() and (y[~mask] == 0).all()


@pytest.mark.parametrize("causal", [True, False])
def test_padded_run_equals_unpadded_run(causal: bool) -> None:
    """Padded keys contribute nothing, though phi(0) = 1: the real tokens alone decide the output."""
    m = make(causal, chunk=4)
    x = torch.randn(1, 10, D, dtype=torch.float64)
    right = torch.tensor([[True] * 6 + [False] * 4])
    torch.testing.assert_close(m(x, right)[:, :6], m(x[:, :6]), atol=1e-12, rtol=0)
    left = torch.tensor([[False] * 4 + [True] * 6])
    torch.testing.assert_close(m(x, left)[:, 4:], m(x[:, 4:]), atol=1e-12, rtol=0)


def test_fully_padded_sequence_gives_zeros_and_finite_grads() -> None:
    m = make(True, chunk=2)
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
        build_mixer("linear_attention", d_model=10, max_len=8, causal=True, n_heads=4)
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        build_mixer("linear_attention", d_model=8, max_len=8, causal=True, chunk=0)
    with pytest.raises(ValueError, match="exceeds max_len"):
        make(True, max_len=4)(torch.randn(1, 5, D, dtype=torch.float64))
    with pytest.raises(NotImplementedError):
        make(False).init_state(1)
