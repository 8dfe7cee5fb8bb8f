"""Spectral mixer specifics: filter resampling, the identity filter, every length up to max_len, the implicit
kernel at every length, the gate, and the online (tiled) decoding state.

The contract (shapes, fast == reference, causality, padding, streaming, errors) runs in test_registry.py, on
every entry of ``SpectralMixer.test_grid`` (the implicit kernel and the gate among them).
"""
import pytest
import torch
import torch.nn.functional as F

from linmix.mixers import build_mixer
from linmix.mixers.spectral import SpectralState, interpolate_bins
from linmix.ops.fftconv import OnlineConv

from .mixer_contract import assert_fast_equals_reference

D, MAX_LEN = 6, 16


def built(causal=True, max_len=MAX_LEN, dtype=torch.float64, **options):
    """A spectral mixer with its parameters moved off their near-identity init."""
    torch.manual_seed(0)
    m = build_mixer("spectral", d_model=D, max_len=max_len, causal=causal, **options)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m.to(dtype).eval()


@torch.no_grad()
def stream(m, x, state):
    ys = []
    for t in range(x.shape[1]):
        y, state = m.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


def test_interpolation_exact_at_max_len_and_linear_between():
    filt = torch.randn(4, 9, dtype=torch.float64)
    assert torch.equal(interpolate_bins(filt, 9), filt)
    for n in (2, 3, 5, 8):
        expected = F.interpolate(filt[None], size=n, mode="linear", align_corners=True)[0]
        torch.testing.assert_close(interpolate_bins(filt, n), expected)
    torch.testing.assert_close(interpolate_bins(filt, 1), filt[:, :1])


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T", [2, 5, 8, 16])
def test_fast_matches_reference_at_even_odd_and_full_lengths(causal, T):
    """Even T has a Nyquist bin, odd T not; T = max_len uses the learned filter unresampled."""
    assert_fast_equals_reference(built(causal), T, masked=False)


def test_identity_filter_is_identity():
    m = build_mixer("spectral", d_model=D, max_len=MAX_LEN, causal=False, out_proj=False).double()
    with torch.no_grad():
        m.filter_re.fill_(1.0)
        m.filter_im.zero_()
    for T in (1, 7, 16):
        x = torch.randn(2, T, D, dtype=torch.float64)
        torch.testing.assert_close(m(x), x)


@pytest.mark.parametrize("options,message", [
    ({"kernel": "foo"}, r"^kernel must be one of \('explicit', 'implicit'\), got 'foo'$"),
    ({"gate": "yes"}, r"^gate must be True or False, got 'yes'$"),
])
def test_bad_options_are_one_line_value_errors(options, message):
    with pytest.raises(ValueError, match=message):
        build_mixer("spectral", d_model=D, max_len=MAX_LEN, causal=True, **options)


def test_only_the_implicit_kernel_is_length_free():
    for causal in (True, False):
        assert built(causal, kernel="implicit").length_free
        explicit = built(causal)
        assert not explicit.length_free and "kernel=implicit" in explicit.length_tie()
        with pytest.raises(ValueError, match=f"exceeds max_len={MAX_LEN}"):
            explicit(torch.randn(1, MAX_LEN + 1, D, dtype=torch.float64))


# ------------------------------------------------------------------------------------------ implicit kernel
@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("causal", [True, False])
def test_implicit_kernel_is_defined_at_four_times_max_len(causal, gate):
    m = built(causal, kernel="implicit", gate=gate)
    assert_fast_equals_reference(m, 4 * MAX_LEN)
    assert_fast_equals_reference(m, 4 * MAX_LEN - 1, masked=False)


def test_implicit_kernel_is_the_same_evaluated_at_once_or_in_chunks():
    """Decoding evaluates lags in doubling chunks; the parallel form all at once: the same numbers."""
    k = built(kernel="implicit").implicit
    whole = k(0, 300)
    assert whole.shape == (D, 300)
    torch.testing.assert_close(torch.cat([k(0, 7), k(7, 64), k(64, 300)], dim=1), whole, rtol=1e-13, atol=0)


def test_implicit_kernel_starts_near_identity_and_decays():
    m = build_mixer("spectral", d_model=D, max_len=64, causal=True, kernel="implicit", out_proj=False).double()
    k = m.implicit(0, 2000)
    assert torch.allclose(k[:, 0], torch.ones(D, dtype=torch.float64), atol=0.2)
    assert k[:, 1:].abs().max() < 0.2
    reach = (-m.implicit.log_alpha.exp()).exp()
    assert reach[0, 0] < 0.5 < reach[0, -1], "some channels reach far, some near"
    assert k[0, 100:].abs().max() < 1e-12 and torch.isfinite(k).all()


def test_bidirectional_implicit_is_a_circular_convolution_with_the_two_sided_kernel():
    m = built(False, kernel="implicit", out_proj=False)
    for T in (1, 2, 7, 8, 64):
        sided = m.implicit.sided(0, T)  # [2, D, T]: side 0 looks back, side 1 ahead
        taps = torch.zeros(D, T, dtype=torch.float64)  # taps[:, m] weighs x[t - m mod T] at output t
        for lag in range(T):
            taps[:, lag] = sided[0, :, lag] if lag < T - T // 2 else sided[1, :, T - lag]
        x = torch.randn(2, T, D, dtype=torch.float64)
        t = torch.arange(T)
        circulant = taps[:, (t[:, None] - t[None, :]) % T]  # [D, out, in]
        torch.testing.assert_close(m(x), torch.einsum("dij,bjd->bid", circulant, x), rtol=1e-10, atol=1e-10)


def test_gradients_reach_the_implicit_kernel_and_the_gate():
    m = built(kernel="implicit", gate=True, dtype=torch.float32).train()
    m(torch.randn(2, 40, D)).square().sum().backward()
    for name in ("implicit.first.weight", "implicit.second.weight", "implicit.last.weight", "implicit.log_alpha",
                 "implicit.skip", "gate_in.weight", "short.weight"):
        grad = dict(m.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


@pytest.mark.parametrize("gate", [False, True])
def test_causality_past_max_len(gate):
    m = built(kernel="implicit", gate=gate)
    x = torch.randn(2, 4 * MAX_LEN, D, dtype=torch.float64)
    y = m(x)
    for t in (0, 17, 4 * MAX_LEN - 2):
        x2 = x.clone()
        x2[:, t + 1:] += 10 * torch.randn_like(x2[:, t + 1:])
        y2 = m(x2)
        torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], rtol=1e-12, atol=1e-12)
        assert not torch.allclose(y2[:, t + 1], y[:, t + 1])


# ---------------------------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("gate", [False, True])
def test_a_thousand_steps_past_max_len_equal_the_parallel_form(gate):
    m = built(kernel="implicit", gate=gate, max_len=64)
    x = torch.randn(2, 1100, D, dtype=torch.float64)
    y = m(x)
    y_step, state = stream(m, x, m.init_state(2))
    torch.testing.assert_close(y_step, y, rtol=1e-9, atol=1e-9)
    assert state.pos == 1100
    for split in (1, 5, 64, 100):
        with torch.no_grad():
            y_pre, state = m.prefill(x[:, :split])
        y_rest, _ = stream(m, x[:, split:300], state)
        torch.testing.assert_close(torch.cat([y_pre, y_rest], 1), y[:, :300], rtol=1e-9, atol=1e-9)


def test_float32_steps_stay_close_to_the_parallel_form():
    m = built(kernel="implicit", gate=True, max_len=64, dtype=torch.float32)
    x = torch.randn(2, 600, D)
    y_step, _ = stream(m, x, m.init_state(2))
    assert (y_step - m(x)).abs().max() < 1e-4 * m(x).abs().max()


def test_the_explicit_kernel_still_stops_at_max_len():
    m = built()
    x = torch.randn(1, MAX_LEN, D, dtype=torch.float64)
    y_step, state = stream(m, x, m.init_state(1))
    torch.testing.assert_close(y_step, m(x), rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match=f"max_len={MAX_LEN}"):
        m.step(x[:, 0], state)


def test_the_state_is_the_tiled_convolution_of_the_long_convolutions_inputs():
    m = built(kernel="implicit", gate=True)
    x = torch.randn(2, 5, D, dtype=torch.float64)
    with torch.no_grad():
        _, state = m.prefill(x)
        _, state = m.step(torch.randn(2, D, dtype=torch.float64), state)
    assert isinstance(state, SpectralState) and isinstance(state.conv, OnlineConv)
    assert state.pos == state.conv.pos == 6 and state.tail.shape == (2, 2, 2 * D)
    v = m.short(m.gate_in(x))[..., :D]
    torch.testing.assert_close(state.conv.history[..., :5], v.transpose(1, 2))
    assert {"tail", "conv.history", "conv.future", "conv.lags"} <= set(state.tensors())
    assert state.nbytes() == sum(t.numel() * t.element_size() for t in state.tensors().values())


@pytest.mark.parametrize("kernel", ["explicit", "implicit"])
def test_state_memory_grows_at_most_linearly(kernel):
    m = built(kernel=kernel, max_len=4096)
    state, per_token = m.init_state(1), {}
    with torch.no_grad():
        for t in range(1, 2049):
            _, state = m.step(torch.randn(1, D, dtype=torch.float64), state)
            per_token[t] = state.nbytes() / t
    early = max(per_token[t] for t in range(128, 257))
    late = max(per_token[t] for t in range(1024, 2049))
    assert late <= 1.1 * early, (early, late)
