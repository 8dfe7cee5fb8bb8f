"""The registry loop: the mixer contract (mixer_contract.py) on every registered mixer and its option grid,
plus the registry's own behaviour. A newly registered mixer is tested here with no other edit."""
from __future__ import annotations

import inspect

import pytest
import torch

import linmix
from linmix.mixers import MIXERS, Mixer, build_mixer, mixer_options, register, registered, unregister
from .mixer_contract import *  # noqa: F401,F403  (the contract's test functions, collected here)

MIXER_CLASSES = MIXERS
DESIGN_MIXERS = {"summation", "aggregation", "spectral", "topological", "attention", "local_attention",
                 "linear_attention", "fnet"}
NAMES = sorted(MIXERS)


def test_registry_has_every_design_mixer_as_a_class() -> None:
    assert DESIGN_MIXERS <= set(MIXERS)
    assert MIXERS is linmix.MIXERS
    for name in MIXERS:
        assert inspect.isclass(MIXERS[name]) and issubclass(MIXERS[name], Mixer), name


@pytest.mark.parametrize("name", NAMES)
def test_options_are_the_init_keywords_with_their_defaults(name: str) -> None:
    params = list(inspect.signature(MIXERS[name].__init__).parameters.values())
    assert [p.name for p in params[:4]] == ["self", "d_model", "max_len", "causal"]
    assert mixer_options(name) == {p.name: p.default for p in params[4:]}
    for opts in MIXERS[name].test_grid:  # a typo in a grid would silently test the defaults
        assert set(opts) <= set(mixer_options(name)), (name, opts)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_names_the_mixer_and_the_accepted_ones(name: str) -> None:
    with pytest.raises(ValueError, match=rf"mixer '{name}' does not take option\(s\) \['windw'\]") as err:
        build_mixer(name, 16, 16, causal=MIXERS[name].supports_causal, windw=3)
    for option, default in mixer_options(name).items():
        assert f"{option}={default!r}" in str(err.value)


@pytest.mark.parametrize("name", [n for n in NAMES if not MIXERS[n].supports_causal])
def test_bidirectional_only_mixers_refuse_causal_with_a_fix(name: str) -> None:
    assert MIXERS[name].supports_streaming is False
    with pytest.raises(ValueError, match=r"bidirectional only.*causal=False"):
        build_mixer(name, 8, 16, causal=True)


def test_unknown_mixer_lists_the_registered_names() -> None:
    with pytest.raises(ValueError, match="registered mixers are: .*attention.*summation"):
        build_mixer("sumation", 8, 16)


def test_register_refuses_duplicates_and_non_mixers() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("summation")(MIXERS["summation"])
    with pytest.raises(TypeError, match="Mixer subclass"):
        register("not_a_mixer")(lambda d_model, max_len, causal: torch.nn.Identity())
    assert "not_a_mixer" not in MIXERS


def test_registered_adds_for_the_block_only() -> None:
    class Copy(MIXERS["fnet"]):
        """A second name for fnet."""

    with registered(Copy, "fnet_copy"):
        assert MIXERS["fnet_copy"] is Copy
        assert isinstance(build_mixer("fnet_copy", 8, 16, causal=False), Copy)
    assert "fnet_copy" not in MIXERS
    with pytest.raises(ValueError, match="unknown mixer 'fnet_copy'"):
        unregister("fnet_copy")
