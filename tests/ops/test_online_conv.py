"""OnlineConv (linmix.ops.fftconv.online): the tiling partitions the past exactly once, each tile equals its
defining sum, and token-by-token decoding (from scratch or after a prefill) equals the direct convolution."""
from __future__ import annotations

import pytest
import torch

from linmix.ops.fftconv import causal_conv_reference
from linmix.ops.fftconv.online import (DIRECT_MAX, OnlineConv, prefill_tiles, tile_apply, tile_operator,
                                       tile_reference, tile_size, tiles_covering)

B, D, T = 2, 3, 300


def coverage(tiles, L: int) -> torch.Tensor:
    """``[L, L]`` count of the tiles holding each (input s, output o) pair, outputs cut at L."""
    count = torch.zeros(L, L, dtype=torch.int64)
    for i, U in tiles:
        count[i - U:i, i:min(i + U, L)] += 1
    return count


def test_tiles_partition_the_strict_lower_triangle_exactly_once():
    L = 300
    count = coverage(tiles_covering(L), L)
    s, o = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")
    assert (count[s < o] == 1).all(), "every past input reaches every later output exactly once"
    assert (count[s >= o] == 0).all(), "no tile reads the present or the future"


def test_a_tile_for_every_power_of_two_dividing_i_would_count_twice():
    """Why only the largest power of two: with all of them, the pair (1, 2) is in two tiles."""
    every = [(i, 2 ** j) for i in range(1, 33) for j in range(6) if i % 2 ** j == 0]
    assert coverage(every, 32)[1, 2] == 2


def test_prefill_tiles_are_those_reaching_past_the_prompt():
    for P in range(300):
        expected = [(i, U) for i, U in tiles_covering(P) if i + U > P]
        assert sorted(prefill_tiles(P)) == expected, P
        assert len(expected) <= max(P, 1).bit_length()


@pytest.mark.parametrize("U", [1, 2, 4, DIRECT_MAX, 2 * DIRECT_MAX, 128])
def test_a_tile_equals_its_defining_sum(U):
    """Direct Toeplitz product (small U) and size-2U circular FFT (large U): no wrap-around, exact."""
    assert tile_size(3 * U) == U and tile_size(U) == U
    block = torch.randn(B, D, U, dtype=torch.float64)
    lags = torch.randn(D, 2 * U, dtype=torch.float64)
    torch.testing.assert_close(tile_apply(block, tile_operator(lags, U), U), tile_reference(block, lags),
                               rtol=1e-12, atol=1e-12)


def kernel_fn(k: torch.Tensor):
    """Lags ``[start, stop)`` of ``k: [D, n]``, zero past its end (as the explicit kernel is)."""
    def lags(start: int, stop: int) -> torch.Tensor:
        taps = k[:, start:stop]
        return torch.cat([taps, taps.new_zeros(k.shape[0], stop - start - taps.shape[1])], dim=1)
    return lags


def signals(dtype: torch.dtype, n_lags: int = T):
    torch.manual_seed(0)
    x = torch.randn(B, D, T, dtype=dtype)
    k = torch.randn(D, n_lags, dtype=dtype) * torch.exp(-torch.arange(n_lags, dtype=dtype) / 100)
    return x, k


@torch.no_grad()
def decode(state: OnlineConv, x: torch.Tensor) -> tuple[torch.Tensor, OnlineConv]:
    ys = []
    for t in range(x.shape[-1]):
        y, state = state.step(x[..., t])
        ys.append(y)
    return torch.stack(ys, -1), state


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_decoding_equals_the_direct_convolution_at_every_length(dtype, tol):
    """One decode of 300 tokens: output t (hence every length 1..300) equals the [T, T] product."""
    x, k = signals(dtype)
    y, state = decode(OnlineConv.empty(B, kernel_fn(k), dtype), x)
    expected = causal_conv_reference(x.double(), k.double())
    torch.testing.assert_close(y.double(), expected, rtol=tol, atol=tol)
    assert state.pos == T and y.dtype == dtype


@pytest.mark.parametrize("P", [1, 5, 64, 100])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_decoding_after_a_prefill_equals_the_direct_convolution(P, dtype, tol):
    x, k = signals(dtype)
    state = OnlineConv.after(x[..., :P], kernel_fn(k), dtype)
    assert state.pos == P
    y, _ = decode(state, x[..., P:])
    expected = causal_conv_reference(x.double(), k.double())[..., P:]
    torch.testing.assert_close(y.double(), expected, rtol=tol, atol=tol)


def test_a_short_kernel_is_zero_past_its_end():
    x, k = signals(torch.float64, n_lags=20)
    y, _ = decode(OnlineConv.empty(B, kernel_fn(k), torch.float64), x)
    full = torch.cat([k, k.new_zeros(D, T - 20)], dim=1)
    torch.testing.assert_close(y, causal_conv_reference(x, full), rtol=1e-12, atol=1e-12)


def test_a_clone_branches_the_decode():
    x, k = signals(torch.float64)
    _, state = decode(OnlineConv.empty(B, kernel_fn(k), torch.float64), x[..., :50])
    branch = state.clone()
    decode(branch, torch.randn_like(x[..., 50:]))
    y, _ = decode(state, x[..., 50:])
    torch.testing.assert_close(y, causal_conv_reference(x, k)[..., 50:], rtol=1e-12, atol=1e-12)


def test_with_autograd_on_a_step_leaves_its_state_alone_and_gradients_are_exact():
    x, k = signals(torch.float64)
    x, k = x[..., :40].clone().requires_grad_(), k[:, :40].clone().requires_grad_()
    state = OnlineConv.empty(B, kernel_fn(k), torch.float64)
    ys = []
    for t in range(40):
        before = state.history.clone()
        y, new = state.step(x[..., t])
        assert torch.equal(state.history, before) and state.pos == t and new.pos == t + 1
        ys.append(y)
        state = new
    weight = torch.randn(B, D, 40, dtype=torch.float64)
    got = torch.autograd.grad((torch.stack(ys, -1) * weight).sum(), [x, k])
    want = torch.autograd.grad((causal_conv_reference(x, k) * weight).sum(), [x, k])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_memory_grows_at_most_linearly():
    x, k = signals(torch.float64)
    k = torch.randn(D, 8192, dtype=torch.float64)
    state, per_token = OnlineConv.empty(1, kernel_fn(k), torch.float64), {}
    with torch.no_grad():
        for t in range(1, 2049):
            _, state = state.step(torch.randn(1, D, dtype=torch.float64))
            per_token[t] = state.nbytes() / t
    early = max(per_token[t] for t in range(128, 257))
    late = max(per_token[t] for t in range(1024, 2049))
    assert late <= 1.1 * early, (early, late)


@pytest.mark.slow
def test_float32_decoding_stays_within_1e_5_of_the_exact_convolution_through_4096_positions():
    """Long decodes accumulate FFT round-off tile by tile: at every position up to 4096, float32 decoding
    is within 1e-5 of the float64 direct convolution, relative to the output's scale."""
    torch.manual_seed(1)
    L = 4096
    x = torch.randn(1, 2, L)
    k = torch.randn(2, L) * torch.exp(-torch.arange(L) / 1000.0)
    y, state = decode(OnlineConv.empty(1, kernel_fn(k), torch.float32), x)
    expected = causal_conv_reference(x.double(), k.double())
    err = (y.double() - expected).abs().amax(dim=(0, 1)) / expected.abs().amax()
    assert state.pos == L and err.max() < 1e-5, (err.argmax().item(), err.max().item())
