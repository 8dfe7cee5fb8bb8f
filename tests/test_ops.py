"""The shared kernels against their slow references, in every precision the models use."""
from __future__ import annotations

import pytest
import torch

from linmix.ops import causal_conv_reference, causal_fft_conv, prefix_sum, prefix_sum_reference


@pytest.mark.parametrize("T", [1, 7, 64, 65, 200, 1000])
def test_prefix_sum_matches_loop_forward_and_backward(T):
    x = torch.randn(2, T, 5, dtype=torch.float64, requires_grad=True)
    y = prefix_sum(x)
    torch.testing.assert_close(y, prefix_sum_reference(x.detach()))
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(gx, prefix_sum_reference(g, reverse=True))


def test_prefix_sum_gradcheck():
    x = torch.randn(1, 70, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(prefix_sum, (x,))


def test_prefix_sum_bf16_over_16k_tokens_keeps_float32_accuracy():
    x = torch.rand(1, 16384, 4) + 0.5
    exact = x.double().cumsum(1)
    y = prefix_sum(x.bfloat16()).double()
    acc = torch.zeros(4, dtype=torch.bfloat16)
    for t in range(x.shape[1]):  # what a running sum kept in bf16 would do
        acc = acc + x[0, t].bfloat16()
    naive = acc.double()
    rel = ((y - exact).abs() / exact).max()
    rel_naive = ((naive - exact[0, -1]).abs() / exact[0, -1]).max()
    assert rel < 0.01  # only the final cast to bf16 rounds (2^-8 relative)
    assert rel_naive > 5 * rel  # a bf16 running sum drifts far more: the float32 accumulation matters


def test_prefix_sum_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\[B, T, D\]"):
        prefix_sum(torch.randn(4, 5))


@pytest.mark.parametrize("T", [1, 5, 64, 100])
def test_causal_fft_conv_equals_toeplitz_product(T):
    x = torch.randn(2, 3, T, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, T, dtype=torch.float64, requires_grad=True)
    y = causal_fft_conv(x, k)
    y_ref = causal_conv_reference(x, k)
    torch.testing.assert_close(y, y_ref)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, k), g)
    grads_ref = torch.autograd.grad(y_ref, (x, k), g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


def test_causal_fft_conv_neither_wraps_nor_looks_ahead():
    T = 32
    x = torch.zeros(1, 1, T, dtype=torch.float64)
    x[..., -1] = 1.0  # an impulse at the last position
    k = torch.ones(1, T, dtype=torch.float64)
    y = causal_fft_conv(x, k)
    assert torch.all(y[..., :-1].abs() < 1e-12), "a circular convolution would wrap the impulse to the start"
