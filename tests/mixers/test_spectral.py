"""Spectral mixer specifics: filter resampling, the identity filter, every length up to max_len, history state.

The contract (shapes, fast == reference, causality, padding, streaming, errors) runs in test_registry.py.
"""
import pytest
import torch
import torch.nn.functional as F

from linmix.mixers import build_mixer
from linmix.mixers.spectral import HistoryState, interpolate_bins

from .mixer_contract import assert_fast_equals_reference

D, MAX_LEN = 6, 16


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
    torch.manual_seed(0)
    m = build_mixer("spectral", d_model=D, max_len=MAX_LEN, causal=causal).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    assert_fast_equals_reference(m, T, masked=False)


def test_identity_filter_is_identity():
    m = build_mixer("spectral", d_model=D, max_len=MAX_LEN, causal=False, out_proj=False).double()
    with torch.no_grad():
        m.filter_re.fill_(1.0)
        m.filter_im.zero_()
    for T in (1, 7, 16):
        x = torch.randn(2, T, D, dtype=torch.float64)
        torch.testing.assert_close(m(x), x)


def test_streaming_state_is_the_whole_history():
    m = build_mixer("spectral", d_model=D, max_len=MAX_LEN, causal=True)
    x = torch.randn(2, 5, D)
    _, state = m.prefill(x)
    _, state = m.step(torch.randn(2, D), state)
    assert isinstance(state, HistoryState) and state.history.shape == (2, 6, D)
    torch.testing.assert_close(state.history[:, :5], x)
