"""Behaviour every registered mixer must have. A newly registered mixer is tested here automatically."""
from __future__ import annotations

import pytest
import torch

import linmix
from linmix.mixers.base import Mixer

D, L = 8, 32


def _supports_causal(name: str) -> bool:
    return type(linmix.build_mixer(name, D, L, causal=False)).supports_causal


VARIANTS = [(n, c) for n in linmix.MIXERS for c in (True, False) if not c or _supports_causal(n)]
CAUSAL = [n for n, c in VARIANTS if c]
IDS = [f"{n}-{'causal' if c else 'bidir'}" for n, c in VARIANTS]


def build(name: str, causal: bool, dtype: torch.dtype = torch.float32, d: int = D, max_len: int = L) -> Mixer:
    torch.manual_seed(1)
    m = linmix.build_mixer(name, d_model=d, max_len=max_len, causal=causal).to(dtype)
    return m.eval()


def test_registry_has_every_design_mixer():
    expected = {"summation", "aggregation", "spectral", "topological", "attention", "local_attention",
                "linear_attention", "fnet"}
    assert expected <= set(linmix.MIXERS)


@pytest.mark.parametrize("name,causal", VARIANTS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_flag(name, causal, dtype):
    m = build(name, causal, dtype)
    x = torch.randn(3, 13, D, dtype=dtype)
    y = m(x)
    assert y.shape == (3, 13, D) and y.dtype == dtype
    assert m.causal is causal
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name,causal", VARIANTS, ids=IDS)
def test_bfloat16_forward_is_close_to_float32(name, causal):
    m32 = build(name, causal)
    m16 = build(name, causal, torch.bfloat16)
    x = torch.randn(2, 24, D)
    y16 = m16(x.bfloat16())
    assert y16.dtype == torch.bfloat16 and torch.isfinite(y16.float()).all()
    y32 = m32(x)
    scale = y32.abs().max().clamp(min=1.0)
    assert (y16.float() - y32).abs().max() / scale < 0.1


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_outputs_ignore_the_future(name):
    m = build(name, True, torch.float64)
    x = torch.randn(2, 20, D, dtype=torch.float64)
    y = m(x)
    for t in (0, 5, 11, 18):
        x2 = x.clone()
        x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:]) * 10
        y2 = m(x2)
        torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], rtol=1e-9, atol=1e-9)
        assert not torch.allclose(y2[:, t + 1:], y[:, t + 1:]), "future perturbation must change future outputs"


@pytest.mark.parametrize("name", CAUSAL)
def test_step_equals_parallel_forward(name):
    m = build(name, True, torch.float64)
    x = torch.randn(2, 19, D, dtype=torch.float64)
    y = m(x)
    state = m.init_state(2)
    outs = []
    for t in range(x.shape[1]):
        y_t, state = m.step(x[:, t], state)
        outs.append(y_t)
    torch.testing.assert_close(torch.stack(outs, 1), y, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", CAUSAL)
def test_prefill_then_step_equals_parallel_forward(name):
    m = build(name, True, torch.float64)
    x = torch.randn(2, 17, D, dtype=torch.float64)
    y = m(x)
    y_pre, state = m.prefill(x[:, :9])
    torch.testing.assert_close(y_pre, y[:, :9], rtol=1e-7, atol=1e-9)
    for t in range(9, 17):
        y_t, state = m.step(x[:, t], state)
        torch.testing.assert_close(y_t, y[:, t], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", CAUSAL)
def test_step_past_max_len_is_a_clear_error(name):
    m = build(name, True, max_len=4)
    state = m.init_state(1)
    for _ in range(4):
        _, state = m.step(torch.randn(1, D), state)
    with pytest.raises(ValueError, match="max_len"):
        m.step(torch.randn(1, D), state)


@pytest.mark.parametrize("name,causal", VARIANTS, ids=IDS)
def test_padded_content_never_reaches_real_positions(name, causal):
    m = build(name, causal, torch.float64)
    x = torch.randn(2, 16, D, dtype=torch.float64)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[0, 11:] = False
    mask[1, 5:] = False
    y = m(x, padding_mask=mask)
    x2 = x.clone()
    x2[~mask] = torch.randn_like(x2[~mask]) * 100
    y2 = m(x2, padding_mask=mask)
    torch.testing.assert_close(y2[mask], y[mask], rtol=1e-9, atol=1e-9)
    assert (y[~mask] == 0).all(), "outputs at padded positions are zero"


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_right_padding_equals_the_unpadded_run(name):
    m = build(name, True, torch.float64)
    x = torch.randn(1, 16, D, dtype=torch.float64)
    mask = torch.ones(1, 16, dtype=torch.bool)
    mask[0, 10:] = False
    torch.testing.assert_close(m(x, padding_mask=mask)[:, :10], m(x[:, :10]), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name,causal", VARIANTS, ids=IDS)
def test_gradcheck_float64(name, causal):
    m = build(name, causal, torch.float64, d=8, max_len=8)
    x = torch.randn(1, 6, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: m(inp), (x,), eps=1e-6, atol=1e-5)
    m(x).pow(2).sum().backward()
    params = [p for p in m.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    assert not params or any(p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("name,causal", VARIANTS, ids=IDS)
def test_fast_path_matches_reference_forward_and_backward(name, causal):
    m = build(name, causal, torch.float64, max_len=160)
    if not hasattr(m, "reference"):
        pytest.fail(f"{name} has no reference(); every mixer keeps a slow, obviously-correct form")
    x = torch.randn(2, 150, D, dtype=torch.float64, requires_grad=True)
    y = m(x)
    x_ref = x.detach().clone().requires_grad_(True)
    y_ref = m.reference(x_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-7, atol=1e-8)
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    (gx_ref,) = torch.autograd.grad(y_ref, x_ref, g)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name,causal", VARIANTS, ids=IDS)
def test_bad_input_is_a_clear_value_error(name, causal):
    m = build(name, causal)
    with pytest.raises(ValueError, match="max_len"):
        m(torch.randn(1, L + 1, D))
    with pytest.raises(ValueError, match=r"\[B, T, D=8\]"):
        m(torch.randn(4, D))
    with pytest.raises(ValueError, match=r"\[B, T, D=8\]"):
        m(torch.randn(1, 4, D + 1))
    with pytest.raises(ValueError, match="bool"):
        m(torch.randn(1, 4, D), padding_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        m(torch.randn(1, 4, D), padding_mask=torch.ones(1, 5, dtype=torch.bool))


@pytest.mark.parametrize("name", [n for n, c in VARIANTS if not c])
def test_bidirectional_mixers_refuse_to_stream(name):
    m = build(name, False)
    with pytest.raises((NotImplementedError, ValueError)):
        state = m.init_state(1)
        m.step(torch.randn(1, D), state)


def test_unknown_mixer_lists_the_registered_names():
    with pytest.raises(ValueError, match="registered mixers are: .*attention.*summation"):
        linmix.build_mixer("sumation", 8, 16)


def test_unknown_option_lists_the_accepted_ones():
    with pytest.raises(ValueError, match="accepts: .*depth"):
        linmix.build_mixer("summation", 8, 16, windw=3)


def test_fnet_refuses_causal_with_a_fix():
    with pytest.raises(ValueError, match="causal=False"):
        linmix.build_mixer("fnet", 8, 16, causal=True)


def test_mixers_do_not_mutate_their_input():
    for name, causal in VARIANTS:
        m = build(name, causal)
        x = torch.randn(1, 8, D)
        before = x.clone()
        m(x, padding_mask=torch.tensor([[True] * 6 + [False] * 2]))
        assert torch.equal(x, before), name
