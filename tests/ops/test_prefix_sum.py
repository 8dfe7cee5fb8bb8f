"""prefix_sum / scan_ (linmix.ops.prefix_sum.scan) against the float64 loop (linmix.ops.prefix_sum.naive)."""
from __future__ import annotations

import pytest
import torch
from ops_helpers import assert_matches_reference, assert_rel_close

from linmix.ops.prefix_sum import prefix_sum, prefix_sum_reference, scan_
from linmix.ops.prefix_sum.scan import SMALL


@pytest.mark.parametrize("T", [1, 7, 63, 64, 65, 200, 500, 1000])
def test_prefix_sum_matches_loop_forward_and_backward(T):
    x = torch.randn(2, T, 5, dtype=torch.float64, requires_grad=True)
    assert_matches_reference(prefix_sum, prefix_sum_reference, [x])


@pytest.mark.parametrize("T", [1, 63, 500])
def test_prefix_sum_bf16_forward_and_backward(T):
    x = torch.randn(2, T, 5).bfloat16().requires_grad_()
    assert_matches_reference(prefix_sum, prefix_sum_reference, [x], tol=1e-2)


def test_backward_is_the_suffix_sum_of_the_gradient():
    x = torch.randn(2, 300, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 300, 3, dtype=torch.float64)
    (gx,) = torch.autograd.grad(prefix_sum(x), x, g)
    torch.testing.assert_close(gx, prefix_sum_reference(g, reverse=True))


@pytest.mark.parametrize("T", [5, 70])  # one [T, T] matmul, and the chunked scan with leftover rows
def test_prefix_sum_gradcheck(T):
    x = torch.randn(1, T, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(prefix_sum, (x,))


@pytest.mark.parametrize("T", [1, 5, 32, 33, 64, 65, 100, 1000, 4097])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("chunk", [None, 8, 16])
def test_in_place_scan_equals_the_loop(T, reverse, chunk):
    x = torch.randn(2, T, 3, dtype=torch.float64)
    buf = x.clone()
    out = scan_(buf, reverse, chunk)
    torch.testing.assert_close(out, prefix_sum_reference(x, reverse))
    assert (out.data_ptr() == buf.data_ptr()) == (T > SMALL), "in place on the CPU above SMALL rows"


def test_prefix_sum_bf16_over_16k_tokens_keeps_float32_accuracy():
    x = torch.rand(1, 16384, 4) + 0.5
    exact = x.double().cumsum(1)
    y = prefix_sum(x.bfloat16())
    assert y.dtype == torch.bfloat16
    acc = torch.zeros(4, dtype=torch.bfloat16)
    for t in range(x.shape[1]):  # what a running sum kept in bf16 would do
        acc = acc + x[0, t].bfloat16()
    rel = ((y.double() - exact).abs() / exact).max()
    rel_naive = ((acc.double() - exact[0, -1]).abs() / exact[0, -1]).max()
    assert rel < 0.01  # only the final cast to bf16 rounds (2^-8 relative)
    assert rel_naive > 5 * rel  # a bf16 running sum drifts far more: the float32 accumulation matters
    assert_rel_close(y, exact, 0.01)


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4, 5)])
def test_prefix_sum_rejects_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"\[B, T, D\]"):
        prefix_sum(torch.randn(*shape))
