"""Summation and aggregation specifics: normalisations, training noise, the O(D) state, the presets, positions.

The contract (shapes, fast == reference, causality, padding, streaming, errors) runs in test_registry.py.
"""
from __future__ import annotations

import math

import pytest
import torch

from linmix.mixers import build_mixer
from linmix.mixers.aggregation import AggregationMixer
from linmix.mixers.summation import SummationMixer, SumMixer, SumState
from linmix.ops.sinusoidal import TABLE_SCALE, sinusoids

D = 4


def plain_sum(causal: bool, normalize: str, **opts) -> AggregationMixer:
    """Aggregation with no projection: the output is the (normalised) sum itself."""
    return build_mixer("aggregation", d_model=D, max_len=16, causal=causal, project=False, normalize=normalize,
                       **opts).double()


@pytest.mark.parametrize("normalize,divide", [("none", lambda n: 1.0), ("count", lambda n: n),
                                              ("sqrt", lambda n: n.sqrt())])
def test_normalisations_divide_by_the_real_tokens_summed(normalize, divide) -> None:
    x = torch.randn(2, 6, D, dtype=torch.float64)
    mask = torch.tensor([[True] * 6, [False, False, True, True, True, False]])
    real = mask.unsqueeze(-1).double()
    n_causal = (real.cumsum(1)).clamp(min=1)
    causal = (x * real).cumsum(1) / divide(n_causal) * real
    torch.testing.assert_close(plain_sum(True, normalize)(x, mask), causal)
    n_all = real.sum(1, keepdim=True)
    bidir = ((x * real).sum(1, keepdim=True) / divide(n_all)).expand_as(x) * real
    torch.testing.assert_close(plain_sum(False, normalize)(x, mask), bidir)


def test_training_noise_is_added_to_the_normalised_sum_only_in_training() -> None:
    m = plain_sum(True, "count", noise_std=0.5)
    x = torch.randn(2, 7, D, dtype=torch.float64, requires_grad=True)
    clean = m.eval()(x)
    torch.testing.assert_close(clean, m.reference(x))
    m.train()
    torch.manual_seed(3)
    noisy = m(x)
    torch.manual_seed(3)
    torch.testing.assert_close(noisy, clean + 0.5 * torch.randn_like(clean))
    g = torch.randn_like(clean)
    torch.testing.assert_close(torch.autograd.grad(noisy, x, g)[0], torch.autograd.grad(clean, x, g)[0])


def test_streaming_state_is_one_running_sum_whatever_the_position() -> None:
    m = build_mixer("summation", d_model=D, max_len=64, causal=True).double()
    with torch.no_grad():
        _, state = m.prefill(torch.randn(3, 5, D, dtype=torch.float64))
        for _ in range(20):
            _, state = m.step(torch.randn(3, D, dtype=torch.float64), state)
    assert isinstance(state, SumState) and state.pos == 25
    assert state.total.shape == (3, D) and state.nbytes() == 3 * D * 8


def test_aggregation_and_summation_are_presets_of_one_machinery() -> None:
    agg = build_mixer("aggregation", d_model=D, max_len=8, causal=True)
    summ = build_mixer("summation", d_model=D, max_len=8, causal=True, positional=False)
    assert isinstance(agg, SumMixer) and isinstance(summ, SummationMixer) and isinstance(summ, SumMixer)
    assert agg.pos is None and not agg.activation and agg.out is None and len(agg.proj) == 1
    assert summ.pos is None and summ.activation and summ.out is not None
    assert build_mixer("summation", d_model=D, max_len=8).pos.shape == (8, D)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_positions_option_and_length_freedom(positions) -> None:
    m = build_mixer("summation", d_model=D, max_len=8, causal=True, positions=positions)
    assert m.length_free is (positions == "sinusoidal")
    assert (m.pos is None) is (positions == "sinusoidal") and (m.pos_amplitude is None) is (positions == "learned")
    assert build_mixer("summation", d_model=D, max_len=8, positional=False).length_free
    assert build_mixer("aggregation", d_model=D, max_len=8).length_free


def test_sinusoidal_positions_are_the_documented_ladder_and_start_on_the_table_scale() -> None:
    S = sinusoids(0, 5, 6, torch.float64)
    t = torch.arange(5, dtype=torch.float64)[:, None]
    freq = torch.tensor([1.0, 1.0, 1e4 ** (-2 / 6), 1e4 ** (-2 / 6), 1e4 ** (-4 / 6), 1e4 ** (-4 / 6)],
                        dtype=torch.float64)
    expected = torch.where(torch.arange(6) % 2 == 0, torch.sin(t * freq), torch.cos(t * freq))
    torch.testing.assert_close(S, expected)
    m = build_mixer("summation", d_model=64, max_len=8, positions="sinusoidal").double()
    torch.testing.assert_close(m.pos_amplitude, torch.full_like(m.pos_amplitude, TABLE_SCALE))
    rms = m.position_rows(0, 4096).detach().square().mean().sqrt()
    assert abs(float(rms) - 0.02) < 1e-3  # the learned table's N(0, 0.02^2) scale


def test_sinusoidal_positions_are_finite_and_bounded_at_65536() -> None:
    m = build_mixer("summation", d_model=D, max_len=8, causal=True, positions="sinusoidal")
    p = m.position_rows(65_536, 3)
    assert p.shape == (3, D) and torch.isfinite(p).all()
    assert (p.abs() <= m.pos_amplitude.abs() + 1e-7).all()
    S = sinusoids(65_536, 1, D, torch.float64)[0]
    exact = [math.sin(65_536 * 1e4 ** (-2 * (d // 2) / D) + (math.pi / 2) * (d % 2)) for d in range(D)]
    torch.testing.assert_close(S, torch.tensor(exact, dtype=torch.float64), rtol=0, atol=1e-9)
    with torch.no_grad():  # a decoding step at position 65,536 of a mixer built with max_len=8
        y, state = m.step(torch.randn(2, D), SumState(65_536, torch.randn(2, D)))
    assert torch.isfinite(y).all() and state.pos == 65_537


def test_summation_state_memory_is_constant_past_max_len() -> None:
    m = build_mixer("summation", d_model=D, max_len=8, causal=True, positions="sinusoidal").double()
    sizes = {}
    with torch.no_grad():
        state = m.init_state(3)
        for t in range(1, 1001):
            _, state = m.step(torch.randn(3, D, dtype=torch.float64), state)
            if t in (10, 1000):
                sizes[t] = state.nbytes()
    assert sizes[10] == sizes[1000] == 3 * D * 8


@pytest.mark.parametrize("name,option,message", [
    ("summation", {"normalize": "mean"}, "normalize must be one of"),
    ("summation", {"depth": -1}, "depth must be >= 0"),
    ("summation", {"positions": "rotary"}, "positions must be one of"),
    ("aggregation", {"noise_std": -0.1}, "noise_std must be >= 0"),
])
def test_option_errors(name, option, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_mixer(name, d_model=D, max_len=8, **option)
