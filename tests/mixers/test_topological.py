"""Topological mixer: conv path against the per-position loop, causality, locality, streaming, padding."""
import pytest
import torch
from torch.func import functional_call

from linmix.mixers import build_mixer

D, MAX_LEN = 8, 24
# (stride, kernel_size): the default 2*stride, kernel == stride, and an odd halo (bidirectional L = 1)
GEOMETRIES = [(4, None), (3, 3), (3, 5)]


def make(causal: bool, stride: int = 4, kernel_size: int | None = None, dtype=torch.float64):
    torch.manual_seed(0)
    m = build_mixer("topological", d_model=D, max_len=MAX_LEN, causal=causal, n_heads=2,
                    stride=stride, kernel_size=kernel_size)
    return m.to(dtype)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("stride,kernel_size", GEOMETRIES)
@pytest.mark.parametrize("T", [1, 3, 4, 7, 12])
def test_fast_matches_reference_forward_and_backward(causal, stride, kernel_size, T):
    m = make(causal, stride, kernel_size)
    x = torch.randn(2, T, D, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, T, D, dtype=torch.float64)
    fast, ref = m(x), m.reference(x)
    torch.testing.assert_close(fast, ref, atol=1e-10, rtol=1e-10)
    params = [x, *m.parameters()]
    grads_fast = torch.autograd.grad(fast, params, g, allow_unused=True)
    grads_ref = torch.autograd.grad(ref, params, g, allow_unused=True)
    for a, b in zip(grads_fast, grads_ref):
        if a is None or b is None:  # e.g. T=1 causal: the encoder never reaches the output in either form
            assert a is None or torch.all(a == 0)
            assert b is None or torch.all(b == 0)
        else:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck(causal):
    torch.manual_seed(0)
    m = build_mixer("topological", d_model=4, max_len=8, causal=causal, n_heads=2, stride=2).double()
    names = [n for n, _ in m.named_parameters()]
    x = torch.randn(1, 5, 4, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    fn = lambda x, *ps: functional_call(m, dict(zip(names, ps)), (x,))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, *params), fast_mode=True)


def _influence(m, x: torch.Tensor) -> list[set[int]]:
    """For each output position t, the input positions whose content changes it (one batched probe each)."""
    T = x.shape[1]
    probes = x.repeat(T + 1, 1, 1)
    probes[torch.arange(1, T + 1), torch.arange(T)] += 10.0  # probe i + 1 perturbs position i only
    y = m(probes)
    changed = (y[1:] - y[:1]).abs().amax(-1) > 1e-12  # [perturbed position i, output t]
    return [set(changed[:, t].nonzero().flatten().tolist()) for t in range(T)]


@pytest.mark.parametrize("stride,kernel_size", GEOMETRIES)
def test_causal_reach_is_own_token_plus_previous_block_window(stride, kernel_size):
    m = make(True, stride, kernel_size)
    K = kernel_size or 2 * stride
    T = 13
    x = torch.randn(1, T, D, dtype=torch.float64)
    reach = _influence(m, x)
    for t in range(T):
        j = t // stride
        window = set(range(max(j * stride - K, 0), j * stride))
        assert reach[t] == window | {t}, f"position {t}"


@pytest.mark.parametrize("stride,kernel_size", GEOMETRIES)
def test_bidirectional_reach_is_own_token_plus_block_window(stride, kernel_size):
    m = make(False, stride, kernel_size)
    K = kernel_size or 2 * stride
    left = (K - stride) // 2
    T = 13
    x = torch.randn(1, T, D, dtype=torch.float64)
    reach = _influence(m, x)
    for t in range(T):
        start = (t // stride) * stride - left
        window = {i for i in range(start, start + K) if 0 <= i < T}
        assert reach[t] == window | {t}, f"position {t}"


def test_causal_never_reads_the_future():
    m = make(True)
    T = 14
    x = torch.randn(2, T, D, dtype=torch.float64)
    y = m(x)
    for t in range(T - 1):
        x2 = x.clone()
        x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :]) * 100
        torch.testing.assert_close(m(x2)[:, : t + 1], y[:, : t + 1], atol=1e-9, rtol=0)


@pytest.mark.parametrize("stride,kernel_size", GEOMETRIES)
def test_step_and_prefill_match_parallel(stride, kernel_size):
    m = make(True, stride, kernel_size, dtype=torch.float32)
    T = 13  # not a multiple of any stride used
    x = torch.randn(3, T, D)
    y = m(x)
    state = m.init_state(3)
    for t in range(T):
        y_t, state = m.step(x[:, t], state)
        torch.testing.assert_close(y_t, y[:, t], atol=1e-5, rtol=1e-5)
    for split in (1, stride - 1, stride, 2 * stride + 1):
        y_pre, state = m.prefill(x[:, :split])
        torch.testing.assert_close(y_pre, y[:, :split], atol=1e-5, rtol=1e-5)
        for t in range(split, T):
            y_t, state = m.step(x[:, t], state)
            torch.testing.assert_close(y_t, y[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_padding_content_does_not_leak(causal):
    m = make(causal)
    x = torch.randn(2, 11, D, dtype=torch.float64)
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[0, 6:] = False
    mask[1, :3] = False
    x2 = x.clone()
    x2[~mask] = torch.randn_like(x2[~mask]) * 100
    y, y2 = m(x, mask), m(x2, mask)
    torch.testing.assert_close(y, y2, atol=1e-9, rtol=0)
    assert torch.all(y[~mask] == 0)


@pytest.mark.parametrize("causal", [False, True])
def test_bfloat16_forward(causal):
    m = make(causal, dtype=torch.float32)
    x = torch.randn(2, 10, D)
    y32 = m(x)
    y16 = m.to(torch.bfloat16)(x.bfloat16())
    assert y16.dtype == torch.bfloat16
    torch.testing.assert_close(y16.float(), y32, atol=0.1, rtol=0.05)


def test_errors():
    with pytest.raises(ValueError, match="even size"):
        build_mixer("topological", d_model=6, max_len=8, causal=True, n_heads=2)
    with pytest.raises(ValueError, match="kernel_size=2 must be >= stride=4"):
        build_mixer("topological", d_model=8, max_len=8, causal=True, n_heads=2, kernel_size=2)
    m = make(True)
    with pytest.raises(ValueError, match="exceeds max_len"):
        m(torch.randn(1, MAX_LEN + 1, D, dtype=torch.float64))
    _, state = m.prefill(torch.randn(1, MAX_LEN, D, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_len"):
        m.step(torch.randn(1, D, dtype=torch.float64), state)
    with pytest.raises(NotImplementedError, match="causal=True"):
        make(False).init_state(1)
