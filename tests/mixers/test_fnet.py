"""FNet specifics: a known value, no parameters, the norm option, the bidirectional-only class attributes.

The contract (shapes, fast == reference, padding, errors) runs in test_registry.py.
"""
import math

import pytest
import torch

from linmix.mixers import build_mixer
from linmix.mixers.fnet import FNetMixer

D, MAX_LEN = 6, 16


def test_known_value_and_no_parameters():
    m = build_mixer("fnet", d_model=D, max_len=MAX_LEN, causal=False)
    assert len(list(m.parameters())) == 0
    T = 5
    y = m(torch.ones(1, T, D, dtype=torch.float64))
    expected = torch.zeros(1, T, D, dtype=torch.float64)
    expected[0, 0, 0] = math.sqrt(T * D)  # the constant signal lives in the DC bin only
    torch.testing.assert_close(y, expected)


def test_backward_norm_is_ortho_times_sqrt_td():
    x = torch.randn(2, 7, D, dtype=torch.float64)
    ortho = build_mixer("fnet", d_model=D, max_len=MAX_LEN, causal=False)(x)
    backward = build_mixer("fnet", d_model=D, max_len=MAX_LEN, causal=False, norm="backward")(x)
    torch.testing.assert_close(backward, ortho * math.sqrt(7 * D))


def test_bidirectional_only_is_readable_without_building_and_refused_with_a_fix():
    assert FNetMixer.supports_causal is False and FNetMixer.supports_streaming is False
    with pytest.raises(ValueError, match=r"FNetMixer is bidirectional only: its 2-D Fourier.*causal=False"):
        FNetMixer(D, MAX_LEN, causal=True)


def test_bad_norm_is_an_error():
    with pytest.raises(ValueError, match="norm must be one of"):
        build_mixer("fnet", d_model=D, max_len=MAX_LEN, causal=False, norm="forward")
