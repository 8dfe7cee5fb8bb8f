"""The registry-loop contract runs, unchanged, on a mixer class defined in the tests (toy_mixer.py)."""
from __future__ import annotations

import pytest
import torch

from linmix.mixers import MIXERS, build_mixer, mixer_options, registered
from .mixer_contract import *  # noqa: F401,F403  (the contract's test functions, collected here)
from .toy_mixer import NAME, ScaledPrefixMean

MIXER_CLASSES = {NAME: ScaledPrefixMean}


@pytest.fixture(autouse=True)
def _toy_registered():
    """Every test here sees the toy registered; the registry is as before once the test ends."""
    assert NAME not in MIXERS
    with registered(ScaledPrefixMean, NAME):
        yield
    assert NAME not in MIXERS


def test_the_toy_is_a_registered_mixer_with_its_option() -> None:
    assert MIXERS[NAME] is ScaledPrefixMean
    assert mixer_options(NAME) == {"alpha": 1.0}


def test_the_toy_computes_alpha_times_the_prefix_mean() -> None:
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    y = build_mixer(NAME, d_model=4, max_len=8, causal=True, alpha=2.0)(x)
    expected = torch.stack([2.0 * x[:, : t + 1].mean(1) for t in range(5)], dim=1)
    torch.testing.assert_close(y, expected)
