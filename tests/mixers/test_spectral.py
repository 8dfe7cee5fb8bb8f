"""Spectral mixer: FFT paths against explicit DFT / Toeplitz references, causality, streaming, padding."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from linmix.mixers import build_mixer
from linmix.mixers.spectral import interpolate_bins

D, MAX_LEN = 6, 16


def make(causal: bool, dtype: torch.dtype = torch.float64, **opts):
    torch.manual_seed(0)
    m = build_mixer("spectral", d_model=D, max_len=MAX_LEN, causal=causal, **opts).to(dtype)
    with torch.no_grad():  # move the filter away from its near-identity init so the tests see real mixing
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T", [1, 2, 5, 8, 16])
def test_fast_matches_reference_forward_and_backward(causal, T):
    m = make(causal)
    x = torch.randn(2, T, D, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, T, D, dtype=torch.float64)
    fast, ref = m(x), m.reference(x)
    torch.testing.assert_close(fast, ref, atol=1e-10, rtol=1e-10)
    params = [x, *m.parameters()]
    grads_fast = torch.autograd.grad(fast, params, g)
    grads_ref = torch.autograd.grad(ref, params, g)
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck(causal):
    m = build_mixer("spectral", d_model=3, max_len=6, causal=causal).double()
    names = [n for n, _ in m.named_parameters()]
    x = torch.randn(1, 5, 3, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    fn = lambda x, *ps: functional_call(m, dict(zip(names, ps)), (x,))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, *params))


def test_interpolation_exact_at_max_len_and_linear_between():
    filt = torch.randn(4, 9, dtype=torch.float64)
    assert torch.equal(interpolate_bins(filt, 9), filt)
    for n in (2, 3, 5, 8):
        expected = F.interpolate(filt[None], size=n, mode="linear", align_corners=True)[0]
        torch.testing.assert_close(interpolate_bins(filt, n), expected)
    torch.testing.assert_close(interpolate_bins(filt, 1), filt[:, :1])


def test_identity_filter_is_identity():
    m = build_mixer("spectral", d_model=D, max_len=MAX_LEN, causal=False, out_proj=False).double()
    with torch.no_grad():
        m.filter_re.fill_(1.0)
        m.filter_im.zero_()
    for T in (1, 7, 16):
        x = torch.randn(2, T, D, dtype=torch.float64)
        torch.testing.assert_close(m(x), x)


def test_causal_never_reads_the_future():
    m = make(True)
    T = 12
    x = torch.randn(2, T, D, dtype=torch.float64)
    y = m(x)
    for t in range(T - 1):
        x2 = x.clone()
        x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :]) * 100
        torch.testing.assert_close(m(x2)[:, : t + 1], y[:, : t + 1], atol=1e-9, rtol=0)


def test_step_and_prefill_match_parallel():
    m = make(True, torch.float32)
    T = 11
    x = torch.randn(3, T, D)
    y = m(x)
    state = m.init_state(3)
    ys = []
    for t in range(T):
        y_t, state = m.step(x[:, t], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y, atol=1e-5, rtol=1e-5)
    split = 4
    y_pre, state = m.prefill(x[:, :split])
    torch.testing.assert_close(y_pre, y[:, :split], atol=1e-5, rtol=1e-5)
    for t in range(split, T):
        y_t, state = m.step(x[:, t], state)
        torch.testing.assert_close(y_t, y[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_padding_content_does_not_leak(causal):
    m = make(causal)
    x = torch.randn(2, 9, D, dtype=torch.float64)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 6:] = False
    mask[1, :2] = False
    x2 = x.clone()
    x2[~mask] = torch.randn_like(x2[~mask]) * 100
    y, y2 = m(x, mask), m(x2, mask)
    torch.testing.assert_close(y, y2, atol=1e-9, rtol=0)
    assert torch.all(y[~mask] == 0)


@pytest.mark.parametrize("causal", [False, True])
def test_bfloat16_forward(causal):
    m = make(causal, torch.float32)
    x = torch.randn(2, 10, D)
    y32 = m(x)
    y16 = m.to(torch.bfloat16)(x.bfloat16())
    assert y16.dtype == torch.bfloat16
    torch.testing.assert_close(y16.float(), y32, atol=0.1, rtol=0.05)


def test_errors():
    m = make(True)
    with pytest.raises(ValueError, match="exceeds max_len"):
        m(torch.randn(1, MAX_LEN + 1, D, dtype=torch.float64))
    _, state = m.prefill(torch.randn(1, MAX_LEN, D, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_len"):
        m.step(torch.randn(1, D, dtype=torch.float64), state)
    bi = make(False)
    with pytest.raises(NotImplementedError, match="causal=True"):
        bi.init_state(1)
