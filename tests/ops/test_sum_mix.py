"""The fused summation layer (linmix.ops.sum_mix.fused) against its composed formula (linmix.ops.sum_mix.naive)."""
from __future__ import annotations

import itertools

import pytest
import torch
from ops_helpers import assert_matches_reference, assert_rel_close

from linmix.ops.sum_mix import sum_mix, sum_mix_reference

D = 6
PRESETS = list(itertools.product([True, False], [0, 1, 2], [True, False], [True, False],
                                 ["none", "count", "sqrt"], [True, False]))


def layer_inputs(B: int, T: int, causal: bool, depth: int, positional: bool, normalize: str, out_proj: bool,
                 dtype: torch.dtype = torch.float64, d: int = D, pos_scale: float = 1.0, extra_rows: int = 3):
    """Differentiable ``x, pos, w_out, *weights`` (None where switched off) and the fixed divisor.

    The divisor is a ragged running count of real tokens (``[B, T, 1]`` causal, ``[B, 1, 1]`` global), as a
    padding mask would give, so its broadcasting is exercised too. The positional table has ``extra_rows``
    rows more than ``T`` (only rows ``[:T]`` are read; the rest must get a zero gradient).
    """
    def leaf(*shape, scale=1.0):
        return (scale * torch.randn(*shape, dtype=dtype)).requires_grad_()

    x = leaf(B, T, d)
    pos = leaf(T + extra_rows, d, scale=pos_scale) if positional else None
    w_out = leaf(d, d, scale=d**-0.5) if out_proj else None
    weights = [leaf(d, d, scale=d**-0.5) for _ in range(depth)]
    real = (torch.rand(B, T) > 0.3).to(dtype)
    counts = (real.cumsum(1) if causal else real.sum(1, keepdim=True)).unsqueeze(-1).clamp(min=1)
    count = {"none": None, "count": counts, "sqrt": counts.sqrt()}[normalize]
    return x, pos, w_out, weights, count


def bind(fn, count, activation: bool, causal: bool, positional: bool, out_proj: bool):
    """``fn(x, [pos], [w_out], *weights)``: the layer as a function of its differentiable tensors only."""
    def call(x, *rest):
        rest = list(rest)
        pos = rest.pop(0) if positional else None
        w_out = rest.pop(0) if out_proj else None
        return fn(x, pos, count, w_out, rest, 1.0, activation, causal)
    return call


def check(B, T, causal, depth, positional, activation, normalize, out_proj, extra_rows=3):
    """The fused layer against the reference in float64, forward and every gradient."""
    x, pos, w_out, weights, count = layer_inputs(B, T, causal, depth, positional, normalize, out_proj,
                                                 extra_rows=extra_rows)
    flags = (activation, causal, positional, out_proj)
    tensors = [t for t in (x, pos, w_out) if t is not None] + weights
    assert_matches_reference(bind(sum_mix, count, *flags), bind(sum_mix_reference, count, *flags), tensors)


@pytest.mark.parametrize("causal,depth,positional,activation,normalize,out_proj", PRESETS)
def test_fused_equals_the_composed_formula(causal, depth, positional, activation, normalize, out_proj):
    check(2, 37, causal, depth, positional, activation, normalize, out_proj)


@pytest.mark.parametrize("T", [1, 63, 500])
@pytest.mark.parametrize("causal", [True, False])
def test_fused_equals_the_composed_formula_at_every_length(T, causal):
    for extra_rows in (0, 3):  # a table of exactly T rows takes the fused function's buffer-reusing path
        check(1, T, causal, 1, True, True, "count", True, extra_rows)
        check(2, T, causal, 2, True, True, "none", True, extra_rows)
    check(2, T, causal, 0, False, False, "sqrt", False)


@pytest.mark.parametrize("causal,depth,batch", [(True, 1, 1), (True, 2, 2), (False, 1, 2), (False, 0, 1)])
def test_fused_gradcheck_on_every_input(causal, depth, batch):
    x, pos, w_out, weights, count = layer_inputs(batch, 5, causal, depth, True, "sqrt", True)
    assert torch.autograd.gradcheck(bind(sum_mix, count, True, causal, True, True), (x, pos, w_out, *weights))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("positional,activation,depth", [(True, True, 1), (False, False, 0)],
                         ids=["summation", "aggregation"])
def test_fused_under_bf16_autocast(causal, positional, activation, depth):
    """Matmuls in bf16, sums in float32: output in bf16, every gradient in its input's own float32."""
    x, pos, w_out, weights, count = layer_inputs(2, 300, causal, depth, positional, "count", True, torch.float32,
                                                 d=32, pos_scale=0.02)
    tensors = [t for t in (x, pos, w_out) if t is not None] + weights
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16 = sum_mix(x, pos, count, w_out, weights, 1.0, activation, causal)
    assert y16.dtype == torch.bfloat16
    g = torch.randn(y16.shape)
    grads16 = torch.autograd.grad(y16, tensors, g.bfloat16())
    assert all(gr.dtype == torch.float32 for gr in grads16)
    wide = [t.detach().double().requires_grad_() for t in tensors]
    y = bind(sum_mix_reference, count.double(), activation, causal, positional, True)(*wide)
    grads = torch.autograd.grad(y, wide, g.double())
    assert_rel_close(y16, y, 0.02)
    for got, want in zip(grads16, grads):  # bf16 rounds u, h and dL/dh, and flips a few ReLU masks
        assert_rel_close(got, want, 0.1, measure="norm")


@pytest.mark.parametrize("causal", [True, False])
def test_onednn_gemms_match_the_mkl_path_at_long_lengths(causal):
    """From ``MIN_ROWS`` tokens up the fused layer's GEMMs go through oneDNN; forward and every gradient must
    equal the ``F.linear`` path to float32 rounding (and the fallback must be taken when switched off)."""
    from linmix.ops.sum_mix import gemm

    T = gemm.MIN_ROWS
    x, pos, w_out, weights, count = layer_inputs(1, T, causal, 2, True, "count", True, dtype=torch.float32, d=32)
    call = bind(sum_mix, count, True, causal, True, True)
    results = []
    for enabled in (True, False):
        gemm.set_onednn(enabled)
        try:
            leaves = [t.detach().clone().requires_grad_() for t in (x, pos, w_out, *weights)]
            y = call(*leaves)
            y.square().sum().backward()
            results.append([y.detach(), *(t.grad for t in leaves)])
        finally:
            gemm.set_onednn(True)
    for fast, slow in zip(*results):
        assert_rel_close(fast, slow, 1e-5)
    a, w = torch.randn(T, 32), torch.randn(16, 32)
    with torch.no_grad():
        assert_rel_close(gemm.linear(a, w), a @ w.T, 1e-5)
        g = torch.randn(T, 16)
        assert_rel_close(gemm.matmul(g, w), g @ w, 1e-5)
