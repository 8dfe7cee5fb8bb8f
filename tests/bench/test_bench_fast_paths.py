"""The speed work must never change results: every fast path against its plain form, forward and backward.

(The kernels' own references are tested in tests/test_ops.py and the mixers' in tests/mixers; these cover the
fused functions added for speed: the one-function summation layer, the in-place scan, the FFT convolution and
circular filter with hand-written adjoints, and the one-column-normaliser chunked linear attention.)
"""
from __future__ import annotations

import itertools

import pytest
import torch

import linmix
from linmix.mixers.linear_attention import (chunked_linear_attention, chunked_linear_attention_reference,
                                            feature_map)
from linmix.mixers.summation import SumMixer
from linmix.ops.fftconv import causal_conv_reference, causal_fft_conv, causal_fft_conv_btd
from linmix.ops.prefix_sum import prefix_sum_reference, scan_

D = 6


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is faster, and immune to a busy machine's thread-barrier stalls."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


SUM_PRESETS = list(itertools.product([True, False], [0, 1, 2], [True, False], [True, False],
                                     ["none", "count", "sqrt"], [True, False]))


def _params(m: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in m.parameters() if p.requires_grad]


@pytest.mark.parametrize("causal,depth,positional,activation,normalize,out_proj", SUM_PRESETS)
def test_fused_summation_equals_the_composed_layer(causal, depth, positional, activation, normalize, out_proj):
    torch.manual_seed(0)
    m = SumMixer(D, 40, causal, depth=depth, positional=positional, activation=activation, normalize=normalize,
                 out_proj=out_proj).double()
    x = torch.randn(2, 37, D, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 37, dtype=torch.bool)
    mask[0, 20:] = False
    mask[1, :3] = False
    for pm in (None, mask):
        y = m(x, padding_mask=pm)
        xm = x if pm is None else x * pm.unsqueeze(-1)
        y_ref = m.mix_composed(xm, pm)
        if pm is not None:
            y_ref = y_ref * pm.unsqueeze(-1)
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
        g = torch.randn_like(y)
        inputs = [x, *_params(m)]
        got = torch.autograd.grad(y, inputs, g, allow_unused=True)
        want = torch.autograd.grad(y_ref, inputs, g, allow_unused=True)
        for a, b in zip(got, want):
            a = torch.zeros_like(inputs[0]) if a is None and b is None else a
            if b is None:
                assert a is None or a.abs().max() == 0
            else:
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("causal,depth,batch", [(True, 1, 1), (True, 2, 2), (False, 1, 2), (False, 0, 1)])
def test_fused_summation_gradcheck_on_every_parameter(causal, depth, batch):
    torch.manual_seed(0)
    m = SumMixer(3, 6, causal, depth=depth, normalize="sqrt").double()
    names = [n for n, _ in m.named_parameters()]
    x = torch.randn(batch, 5, 3, dtype=torch.float64, requires_grad=True)
    params = [p.detach().requires_grad_() for p in m.parameters()]

    def f(inp, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (inp,))

    assert torch.autograd.gradcheck(f, (x, *params))


def test_fused_summation_backward_can_run_twice():
    m = linmix.build_mixer("summation", D, 64)
    x = torch.randn(1, 64, D, requires_grad=True)
    y = m(x)
    g1 = torch.autograd.grad(y, x, torch.ones_like(y), retain_graph=True)[0]
    g2 = torch.autograd.grad(y, x, torch.ones_like(y))[0]
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("name", ["summation", "aggregation"])
@pytest.mark.parametrize("causal", [True, False])
def test_fused_summation_under_bf16_autocast(name, causal):
    torch.manual_seed(0)
    m = linmix.build_mixer(name, 32, 300, causal=causal)
    x = torch.randn(2, 300, 32, requires_grad=True)
    y32 = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16 = m(x)
    assert y16.dtype == torch.bfloat16
    assert ((y16.float() - y32).abs().max() / y32.abs().max()) < 0.02
    y16.float().sum().backward()
    assert x.grad.dtype == torch.float32 and all(p.grad.dtype == torch.float32 for p in m.parameters())


@pytest.mark.parametrize("T", [1, 5, 32, 33, 64, 65, 100, 1000, 4097])
@pytest.mark.parametrize("reverse", [False, True])
def test_in_place_scan_equals_the_loop(T, reverse):
    x = torch.randn(2, T, 3, dtype=torch.float64)
    for chunk in (None, 8, 16):
        torch.testing.assert_close(scan_(x.clone(), reverse, chunk), prefix_sum_reference(x, reverse))


@pytest.mark.parametrize("T", [1, 2, 5, 64, 100])
@pytest.mark.parametrize("batch", [1, 3])
def test_fft_conv_adjoints_equal_autograd_of_the_toeplitz_product(T, batch):
    x = torch.randn(batch, 3, T, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, T, dtype=torch.float64, requires_grad=True)
    y_ref = causal_conv_reference(x, k)
    g = torch.randn_like(y_ref)
    want = torch.autograd.grad(y_ref, (x, k), g)
    for y in (causal_fft_conv(x, k), causal_fft_conv_btd(x.transpose(1, 2), k).transpose(1, 2)):
        torch.testing.assert_close(y, y_ref)
        for a, b in zip(torch.autograd.grad(y, (x, k), g, retain_graph=True), want):
            torch.testing.assert_close(a, b)
        for a, b in zip(torch.autograd.grad(y, (x, k), g), want):  # twice: saved tensors are untouched
            torch.testing.assert_close(a, b)
    if T <= 5:  # gradcheck perturbs every input element: small sizes only
        xb = x.detach().transpose(1, 2).contiguous().requires_grad_()
        assert torch.autograd.gradcheck(causal_fft_conv_btd, (xb, k))


@pytest.mark.parametrize("T,max_len", [(1, 8), (7, 8), (8, 8), (33, 40), (40, 40)])
@pytest.mark.parametrize("causal", [True, False])
def test_spectral_fast_paths_equal_the_reference(T, max_len, causal):
    torch.manual_seed(0)
    m = linmix.build_mixer("spectral", D, max_len, causal=causal).double()
    x = torch.randn(2, T, D, dtype=torch.float64, requires_grad=True)
    y, y_ref = m(x), m.reference(x)
    torch.testing.assert_close(y, y_ref)
    g = torch.randn_like(y)
    inputs = [x, *_params(m)]
    for a, b in zip(torch.autograd.grad(y, inputs, g), torch.autograd.grad(y_ref, inputs, g)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("T", [1, 5, 64, 100])
@pytest.mark.parametrize("chunk", [4, 64])
def test_one_column_normaliser_equals_the_separate_one(T, chunk):
    q, k, v = (torch.randn(2, 3, T, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    a = chunked_linear_attention(feature_map(q), feature_map(k), v, chunk, 1e-6)
    b = chunked_linear_attention_reference(feature_map(q), feature_map(k), v, chunk, 1e-6)
    torch.testing.assert_close(a, b)
    g = torch.randn_like(a)
    for x, y in zip(torch.autograd.grad(a, (q, k, v), g), torch.autograd.grad(b, (q, k, v), g)):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("batch", [1, 3])
def test_fft_conv_in_channel_groups_equals_one_group(batch, monkeypatch):
    import linmix.ops.fftconv as fftconv

    x = torch.randn(batch, 7, 50, dtype=torch.float64, requires_grad=True)
    k = torch.randn(7, 50, dtype=torch.float64, requires_grad=True)
    y_ref = causal_conv_reference(x, k)
    g = torch.randn_like(y_ref)
    want = torch.autograd.grad(y_ref, (x, k), g)
    monkeypatch.setattr(fftconv, "GROUP_BYTES", 3000)  # several groups, a ragged last one
    groups = fftconv.channel_groups(batch, 7, 128, 8)
    assert len(groups) > 2 and groups[-1][1] == 7
    y = causal_fft_conv_btd(x.transpose(1, 2), k).transpose(1, 2)
    torch.testing.assert_close(y, y_ref)
    for a, b in zip(torch.autograd.grad(y, (x, k), g), want):
        torch.testing.assert_close(a, b)


def test_onednn_gemms_agree_with_torch_linear():
    from linmix.ops import gemm

    a = torch.randn(3, 1000, 32)
    w = torch.randn(16, 32)
    old = gemm.MIN_ROWS
    try:
        gemm.MIN_ROWS = 1  # take the oneDNN path even at this size (where the build has it)
        torch.testing.assert_close(gemm.linear(a, w), torch.nn.functional.linear(a, w), rtol=1e-5, atol=1e-5)
        g = torch.randn(3, 1000, 16)
        torch.testing.assert_close(gemm.matmul(g, w), g @ w, rtol=1e-5, atol=1e-5)
        m = linmix.build_mixer("summation", 32, 1000)
        x = torch.randn(2, 1000, 32, requires_grad=True)
        y = m(x)
        grads = torch.autograd.grad(y.square().sum(), [x, *m.parameters()])
        gemm.set_onednn(False)
        y_mkl = m(x)
        grads_mkl = torch.autograd.grad(y_mkl.square().sum(), [x, *m.parameters()])
    finally:
        gemm.MIN_ROWS = old
        gemm.set_onednn(True)
    torch.testing.assert_close(y, y_mkl, rtol=1e-5, atol=1e-5)
    for a_, b_ in zip(grads, grads_mkl):
        torch.testing.assert_close(a_, b_, rtol=1e-4, atol=1e-4)
