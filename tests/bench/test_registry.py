"""The declarative case list, model tables and the parsers of user-given lengths, mixers and layer specs."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

import linmix
import linmix.models.spec as model_spec
from linmix.bench import registry
from linmix.bench.registry import (DECODE_MODELS, FLOOR_CLONE, FLOOR_LINEAR, TRAIN_MODELS, OpCase, layer_names,
                                   mixer_spec, parse_lengths, parse_models, parse_modes, projection_count,
                                   select_cases, split_specs)


def _fake_spec_parser(text: str):
    """What ``linmix.models.spec.parse_layer_specs`` will return: objects with ``.name`` and ``.options``."""
    out = []
    for item in split_specs(text):
        head, _, count = item.rpartition("*") if item.rpartition("*")[2].isdigit() else (item, "", "1")
        name, _, rest = head.partition("(")
        pairs = [p.split("=") for p in rest.rstrip(")").split(",") if p]
        out += [SimpleNamespace(name=name.strip(), options={k.strip(): int(v) for k, v in pairs})] * int(count)
    return out


@pytest.fixture(params=["bare names only", "inline options"])
def spec_parser(request, monkeypatch):
    """Run a test with the models' ``parse_layer_specs`` (or a stand-in of it), and with none at all."""
    if request.param == "inline options":
        monkeypatch.setattr(model_spec, "parse_layer_specs", getattr(model_spec, "parse_layer_specs",
                                                                      _fake_spec_parser), raising=False)
    else:
        monkeypatch.setattr(registry, "_layer_spec_parser", lambda: None)
    return request.param


def test_cases_always_hold_floors_and_the_attention_baseline():
    labels = [c.label for c in select_cases(["summation"])]
    assert labels == [FLOOR_CLONE, FLOOR_LINEAR, "attention/causal", "attention/bidir", "summation/causal",
                      "summation/bidir"]


def test_every_registered_mixer_is_a_case_and_fnet_has_no_causal_one():
    labels = {c.label for c in select_cases()}
    assert {f"{name}/bidir" for name in linmix.MIXERS} <= labels
    assert "fnet/causal" not in labels and "summation/causal" in labels


@pytest.mark.parametrize("name", ["summaton", "summation(nope=2)"])
def test_unknown_mixer_is_a_value_error(spec_parser, name):
    with pytest.raises(ValueError):
        select_cases([name])


def test_bare_names_work_with_or_without_the_spec_parser(spec_parser):
    assert mixer_spec(" summation ") == ("summation", {})
    assert layer_names("summation*3,attention") == ["summation"] * 3 + ["attention"]


def test_inline_options_reach_build_mixer(monkeypatch):
    monkeypatch.setattr(model_spec, "parse_layer_specs", getattr(model_spec, "parse_layer_specs", _fake_spec_parser),
                        raising=False)
    case = OpCase("local_attention(window=8)", True, "mixer")
    assert case.mixer == "local_attention" and case.label == "local_attention(window=8)/causal"
    assert case.build(16, 32).window == 8
    assert OpCase.from_dict(case.to_dict()) == case  # travels to the memory probe as it was written
    with pytest.raises(ValueError, match="not one mixer"):
        mixer_spec("summation,attention")


@pytest.mark.parametrize("text, items", [
    ("a,b", ["a", "b"]), ("local_attention(window=64,n_heads=2), summation", ["local_attention(window=64,n_heads=2)",
                                                                              "summation"]), (" a ,, ", ["a"]),
])
def test_split_specs_keeps_commas_inside_parentheses(text, items):
    assert split_specs(text) == items


@pytest.mark.parametrize("text, lengths", [("256:2048", [256, 512, 1024, 2048]), ("64,16,16", [16, 64]),
                                           ([32, 8], [8, 32]), ("5:5", [5])])
def test_parse_lengths(text, lengths):
    assert parse_lengths(text) == lengths


@pytest.mark.parametrize("bad", ["0:8", "a,b", "8:4", "x:y", "", "-4"])
def test_bad_lengths_are_value_errors(bad):
    with pytest.raises(ValueError, match="lengths"):
        parse_lengths(bad)


@pytest.mark.parametrize("text, table, models", [
    ("summation,attention", DECODE_MODELS, {"summation": "summation*4", "attention": "attention*4"}),
    ("mine=local_attention(window=8)*2", TRAIN_MODELS, {"mine": "local_attention(window=8)*2"}),
    (None, TRAIN_MODELS, TRAIN_MODELS),
])
def test_parse_models_passes_layer_specs_through(text, table, models):
    assert parse_models(text, table) == models


def test_unknown_model_and_mode_are_value_errors():
    with pytest.raises(ValueError, match="unknown model"):
        parse_models("nope", TRAIN_MODELS)
    with pytest.raises(ValueError, match="mode"):
        parse_modes("sideways")


@pytest.mark.parametrize("name, causal, n_proj", [("summation", True, 2), ("aggregation", True, 1),
                                                  ("attention", True, 4), ("fnet", False, 0)])
def test_projection_count_is_the_mixers_own_floor(name, causal, n_proj):
    assert projection_count(linmix.build_mixer(name, 16, 8, causal=causal), 16) == n_proj
