"""FNet mixer: Re(FFT2) against explicit DFT matrices, bidirectional-only error, padding, dtypes."""
import math

import pytest
import torch

from linmix.mixers import build_mixer
from linmix.mixers.fnet import FNetMixer

D, MAX_LEN = 6, 16


@pytest.mark.parametrize("norm", ["ortho", "backward"])
@pytest.mark.parametrize("T", [1, 2, 7, 16])
def test_fast_matches_reference_forward_and_backward(norm, T):
    m = build_mixer("fnet", d_model=D, max_len=MAX_LEN, causal=False, norm=norm)
    x = torch.randn(2, T, D, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, T, D, dtype=torch.float64)
    fast, ref = m(x), m.reference(x)
    torch.testing.assert_close(fast, ref, atol=1e-10, rtol=1e-10)
    (g_fast,) = torch.autograd.grad(fast, x, g)
    (g_ref,) = torch.autograd.grad(ref, x, g)
    torch.testing.assert_close(g_fast, g_ref, atol=1e-10, rtol=1e-10)


def test_known_value_and_no_parameters():
    m = build_mixer("fnet", d_model=D, max_len=MAX_LEN, causal=False)
    assert len(list(m.parameters())) == 0
    T = 5
    y = m(torch.ones(1, T, D, dtype=torch.float64))
    expected = torch.zeros(1, T, D, dtype=torch.float64)
    expected[0, 0, 0] = math.sqrt(T * D)  # the constant signal lives in the DC bin only
    torch.testing.assert_close(y, expected)


def test_gradcheck():
    m = build_mixer("fnet", d_model=3, max_len=6, causal=False)
    x = torch.randn(1, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))


@pytest.mark.parametrize("build", [
    lambda: build_mixer("fnet", d_model=D, max_len=MAX_LEN, causal=True),
    lambda: FNetMixer(D, MAX_LEN, causal=True),
])
def test_causal_request_is_a_clear_error(build):
    with pytest.raises(ValueError, match=r"bidirectional only.*causal=False"):
        build()
    assert FNetMixer.supports_causal is False


def test_bad_norm_is_an_error():
    with pytest.raises(ValueError, match="norm must be one of"):
        build_mixer("fnet", d_model=D, max_len=MAX_LEN, causal=False, norm="forward")


def test_padding_content_does_not_leak():
    m = build_mixer("fnet", d_model=D, max_len=MAX_LEN, causal=False)
    x = torch.randn(2, 9, D, dtype=torch.float64)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 5:] = False
    x2 = x.clone()
    x2[~mask] = torch.randn_like(x2[~mask]) * 100
    y, y2 = m(x, mask), m(x2, mask)
    torch.testing.assert_close(y, y2, atol=1e-9, rtol=0)
    assert torch.all(y[~mask] == 0)


def test_dtypes_and_errors():
    m = build_mixer("fnet", d_model=D, max_len=MAX_LEN, causal=False)
    x = torch.randn(2, 10, D)
    y32 = m(x)
    assert y32.dtype == torch.float32
    y16 = m(x.bfloat16())
    assert y16.dtype == torch.bfloat16
    torch.testing.assert_close(y16.float(), y32, atol=0.1, rtol=0.05)
    with pytest.raises(ValueError, match="exceeds max_len"):
        m(torch.randn(1, MAX_LEN + 1, D))
    with pytest.raises(NotImplementedError, match="streaming"):
        m.init_state(2)
