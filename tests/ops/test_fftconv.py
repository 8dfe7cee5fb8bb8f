"""causal_fft_conv(_btd) and circular_filter_btd (linmix.ops.fftconv.fft) against the [T, T] products (naive)."""
from __future__ import annotations

import pytest
import torch
from ops_helpers import assert_matches_reference

from linmix.ops.fftconv import (causal_conv_reference, causal_fft_conv, causal_fft_conv_btd, circular_filter_btd,
                                circular_filter_reference)
from linmix.ops.fftconv import fft as fft_module

D = 3


def btd_conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The ``[B, T, D]`` entry point seen through the ``[B, D, T]`` layout of the reference."""
    return causal_fft_conv_btd(x.transpose(1, 2), k).transpose(1, 2)


CONVS = pytest.mark.parametrize("conv", [causal_fft_conv, btd_conv], ids=["bdt", "btd"])


def conv_inputs(batch: int, T: int, dtype: torch.dtype = torch.float64, channels: int = D):
    return (torch.randn(batch, channels, T, dtype=dtype, requires_grad=True),
            torch.randn(channels, T, dtype=dtype, requires_grad=True))


def filter_inputs(batch: int, T: int, dtype: torch.dtype = torch.float64):
    return (torch.randn(batch, T, D, dtype=dtype, requires_grad=True),
            *(torch.randn(D, T // 2 + 1, dtype=dtype, requires_grad=True) for _ in range(2)))


@CONVS
@pytest.mark.parametrize("T", [1, 2, 5, 63, 64, 100, 500])
@pytest.mark.parametrize("batch", [1, 3])
def test_causal_conv_equals_the_toeplitz_product(conv, T, batch):
    assert_matches_reference(conv, causal_conv_reference, conv_inputs(batch, T))


@CONVS
def test_causal_conv_bf16(conv):
    assert_matches_reference(conv, causal_conv_reference, conv_inputs(2, 300, torch.bfloat16), tol=2e-2)


@CONVS
@pytest.mark.parametrize("T", [1, 5])  # gradcheck perturbs every input element: small sizes only
def test_causal_conv_gradcheck(conv, T):
    assert torch.autograd.gradcheck(conv, conv_inputs(2, T))


@CONVS
def test_causal_conv_neither_wraps_nor_looks_ahead(conv):
    T = 32
    x = torch.zeros(1, 1, T, dtype=torch.float64)
    x[..., -1] = 1.0  # an impulse at the last position
    y = conv(x, torch.ones(1, T, dtype=torch.float64))
    assert torch.all(y[..., :-1].abs() < 1e-12), "a circular convolution would wrap the impulse to the start"
    assert abs(y[0, 0, -1].item() - 1.0) < 1e-12


@pytest.mark.parametrize("batch", [1, 3])
def test_causal_conv_in_channel_groups_equals_one_group(batch, monkeypatch):
    monkeypatch.setattr(fft_module, "GROUP_BYTES", 3000)  # several groups, a ragged last one
    groups = fft_module.channel_groups(batch, 7, 128, 8)
    assert len(groups) > 2 and groups[-1][1] == 7
    assert_matches_reference(btd_conv, causal_conv_reference, conv_inputs(batch, 50, channels=7))


@pytest.mark.parametrize("T", [1, 2, 5, 8, 63, 64, 500])
@pytest.mark.parametrize("batch", [1, 3])
def test_circular_filter_equals_the_circulant_product(T, batch):
    assert_matches_reference(circular_filter_btd, circular_filter_reference, filter_inputs(batch, T))


def test_circular_filter_bf16():
    assert_matches_reference(circular_filter_btd, circular_filter_reference, filter_inputs(2, 300, torch.bfloat16),
                             tol=2e-2)


@pytest.mark.parametrize("T", [4, 5])  # even T has a Nyquist bin, odd T none
def test_circular_filter_gradcheck(T):
    assert torch.autograd.gradcheck(circular_filter_btd, filter_inputs(2, T))


def test_circular_filter_of_the_identity_spectrum_is_the_identity():
    x, h_re, h_im = filter_inputs(2, 16)
    y = circular_filter_btd(x, torch.ones_like(h_re), torch.zeros_like(h_im))
    torch.testing.assert_close(y, x)


@pytest.mark.parametrize("conv", [causal_fft_conv, causal_fft_conv_btd])
def test_causal_conv_rejects_a_kernel_of_another_length(conv):
    with pytest.raises(ValueError, match="kernel length 9"):
        conv(torch.randn(1, 8, 8), torch.randn(8, 9))


@pytest.mark.parametrize("shape", [(D, 4), (D + 1, 5), (D, 5, 1)])
def test_circular_filter_rejects_a_filter_of_the_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"\[D, T//2\+1\]"):
        circular_filter_btd(torch.randn(1, 8, D), torch.randn(*shape), torch.randn(*shape))
