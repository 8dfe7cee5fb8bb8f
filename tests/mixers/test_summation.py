"""Summation and aggregation specifics: the normalisations, the training noise, the O(D) state, the preset.

The contract (shapes, fast == reference, causality, padding, streaming, errors) runs in test_registry.py.
"""
from __future__ import annotations

import pytest
import torch

from linmix.mixers import build_mixer
from linmix.mixers.aggregation import AggregationMixer
from linmix.mixers.summation import SummationMixer, SumMixer, SumState

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


@pytest.mark.parametrize("name,option,message", [
    ("summation", {"normalize": "mean"}, "normalize must be one of"),
    ("summation", {"depth": -1}, "depth must be >= 0"),
    ("aggregation", {"noise_std": -0.1}, "noise_std must be >= 0"),
])
def test_option_errors(name, option, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_mixer(name, d_model=D, max_len=8, **option)
