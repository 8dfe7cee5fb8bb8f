"""Layer specs: the grammar, its errors, the round trip through format_layers, and inline options reaching mixers."""
from __future__ import annotations

import pytest
import torch

import linmix
from linmix.config import ModelConfig
from linmix.models.spec import LayerSpec, format_layers, parse_layer_specs, parse_layers

V = 30


@pytest.mark.parametrize("spec, expected", [
    ("summation", [("summation", {})]),
    ("summation*3,attention", [("summation", {})] * 3 + [("attention", {})]),
    ("local_attention(window=64)", [("local_attention", {"window": 64})]),
    ("summation*2,local_attention(window=64,n_heads=2)*2",
     [("summation", {})] * 2 + [("local_attention", {"window": 64, "n_heads": 2})] * 2),
    # whitespace anywhere between tokens is ignored
    ("  summation ( depth = 2 ) * 2 ,\n attention ", [("summation", {"depth": 2})] * 2 + [("attention", {})]),
    # bools (any case), None, floats, ints, bare and quoted strings; a bare word for an option whose default
    # is a string stays that string (normalize=none is "none"), elsewhere none is None
    ("summation(positional=false,pos_bias=0.5,normalize=none)",
     [("summation", {"positional": False, "pos_bias": 0.5, "normalize": "none"})]),
    ("topological(kernel_size=none,stride=2)", [("topological", {"kernel_size": None, "stride": 2})]),
    ("summation(positional=TRUE,pos_bias=1e-3,depth=3)",
     [("summation", {"positional": True, "pos_bias": 1e-3, "depth": 3})]),
    ("summation(normalize=count)", [("summation", {"normalize": "count"})]),
    ("summation(normalize='count')", [("summation", {"normalize": "count"})]),
    ('summation(normalize="a,b)(")', [("summation", {"normalize": "a,b)("})]),  # separators inside quotes
    ("summation(normalize=64)", [("summation", {"normalize": "64"})]),  # quoted: stays a string
    ("summation()", [("summation", {})]),
])
def test_grammar(spec, expected):
    layers = parse_layer_specs(spec)
    assert [(layer.name, layer.options) for layer in layers] == expected
    assert parse_layers(spec) == [name for name, _ in expected]
    for layer, (_, options) in zip(layers, expected):
        assert [type(v) for v in layer.options.values()] == [type(v) for v in options.values()]


def test_list_input_and_layer_specs_are_accepted():
    assert parse_layer_specs(["summation", "local_attention(window=8)*2"]) == [
        LayerSpec("summation"), LayerSpec("local_attention", {"window": 8}), LayerSpec("local_attention", {"window": 8})]
    assert parse_layer_specs([LayerSpec("attention")]) == [LayerSpec("attention")]
    with pytest.raises(ValueError, match="unknown mixer 'wat'"):
        parse_layer_specs([LayerSpec("wat")])


@pytest.mark.parametrize("spec, needles", [
    ("summation,wat", ["unknown mixer 'wat'", "registered mixers are:", "attention", "summation"]),
    ("local_attention(windw=8)", ["mixer 'local_attention'", "['windw']", "accepts:", "n_heads", "window"]),
    ("fnet(n_heads=2)", ["mixer 'fnet'", "['n_heads']", "accepts: norm"]),
    ("summation(depth=2", ["unclosed (", "summation(depth=2"]),
    ("summation)depth=2(", ["unbalanced ')'"]),
    ("summation(normalize='count)", ["unclosed quote"]),
    ("summation*x", ["bad repeat 'x'"]),
    ("summation*", ["bad repeat ''"]),
    ("summation*1.5", ["bad repeat '1.5'"]),
    ("summation*0", ["repeat count must be >= 1"]),
    ("summation*-2", ["repeat count must be >= 1"]),
    ("summation*2*2", ["cannot read layer"]),
    ("local_attention(window=8,window=16)", ["option 'window' given twice"]),
    ("local_attention(window)", ["bad option 'window'", "key=value"]),
    ("local_attention(8=window)", ["bad option"]),
    ("summation,,attention", ["empty layer"]),
    ("", ["empty layer"]),
    ("2summation", ["cannot read layer"]),
])
def test_errors_name_the_problem(spec, needles):
    with pytest.raises(ValueError) as info:
        parse_layer_specs(spec)
    for needle in needles:
        assert needle in str(info.value), str(info.value)


@pytest.mark.parametrize("bad", [None, 3, {"summation": 1}])
def test_non_string_spec_is_a_value_error(bad):
    with pytest.raises(ValueError, match="spec string"):
        parse_layer_specs(bad)


@pytest.mark.parametrize("spec", [
    "summation",
    "summation*3,attention",
    "summation*3,local_attention(window=64)",
    "attention,summation*2,attention",
    "spectral(out_proj=false)*2,fnet",
    "summation(normalize=none,pos_bias=0.5)",
    "summation(normalize=none)",  # a string option: the bare word is the string "none", not None
    "summation(normalize=64)",  # a string option: the string "64", not 64
    "linear_attention(eps=1e-06,chunk=16)",
])
def test_format_layers_round_trips_canonical_specs(spec):
    layers = parse_layer_specs(spec)
    assert format_layers(layers) == spec
    assert parse_layer_specs(format_layers(layers)) == layers


@pytest.mark.parametrize("value", ["a,b", "x(y)", "a=b", "two words", "it's", 'say "hi"', "*", "", "True", "1.5"])
def test_format_layers_round_trips_any_string_option(value):
    layers = [LayerSpec("summation", {"normalize": value})] * 2
    text = format_layers(layers)
    assert parse_layer_specs(text) == layers, text


def test_format_layers_compresses_runs_and_accepts_names():
    assert format_layers(["a", "a", "b", "a"]) == "a*2,b,a"
    assert format_layers(parse_layer_specs(" summation , summation,attention ")) == "summation*2,attention"


def _mixers(model) -> list:
    return [getattr(layer, "mixer", layer) for layer in model.encoder.layers]


@pytest.mark.parametrize("layers, mixer_options, windows", [
    ("summation,local_attention(window=8)", {}, [8]),
    ("local_attention*2", {"local_attention": {"window": 16}}, [16, 16]),
    ("local_attention(window=8),local_attention", {"local_attention": {"window": 16}}, [8, 16]),  # inline wins
])
def test_inline_options_reach_the_built_mixer(layers, mixer_options, windows):
    lm = linmix.LanguageModel(V, d_model=16, layers=layers, max_len=32, n_heads=2, mixer_options=mixer_options)
    built = [m.window for m in _mixers(lm) if hasattr(m, "window")]
    assert built == windows
    assert lm.config.layers == layers  # the spec string is kept as written


@pytest.mark.parametrize("make", [
    lambda layers, **kw: linmix.LanguageModel(V, d_model=16, layers=layers, max_len=32, n_heads=4, **kw),
    lambda layers, **kw: linmix.Classifier(V, 3, d_model=16, layers=layers, max_len=32, n_heads=4, **kw),
    lambda layers, **kw: linmix.MultimodalRegressor(V, 2, d_model=16, layers=layers, max_len=32, n_heads=4, **kw),
])
def test_inline_n_heads_overrides_model_n_heads_and_mixer_options(make):
    model = make("attention(n_heads=2),attention,linear_attention", mixer_options={"linear_attention": {"n_heads": 1}})
    encoder = model.text if isinstance(model, linmix.MultimodalRegressor) else model.encoder
    encoder = getattr(encoder, "seq", encoder)
    heads = [layer.mixer.n_heads for layer in encoder.layers]
    assert heads == [2, 4, 1]


def test_inline_options_change_the_computation():
    torch.manual_seed(0)
    a = linmix.LanguageModel(V, d_model=16, layers="local_attention(window=2)", max_len=32, n_heads=2).eval()
    torch.manual_seed(0)
    b = linmix.LanguageModel(V, d_model=16, layers="local_attention(window=32)", max_len=32, n_heads=2).eval()
    ids = torch.randint(0, V, (1, 20))
    assert not torch.allclose(a(ids)[:, -1], b(ids)[:, -1])
    torch.testing.assert_close(a(ids)[:, :2], b(ids)[:, :2])  # the first two positions see the same keys


@pytest.mark.parametrize("kwargs, needle", [
    (dict(layers="local_attention(windw=8)"), "mixer 'local_attention' does not take option(s) ['windw']"),
    (dict(layers="local_attention", mixer_options={"local_attention": {"windw": 8}}),
     "mixer 'local_attention' does not take option(s) ['windw']"),
    (dict(layers="summation", mixer_options={"summation": 3}), "mixer_options must map mixer names"),
    (dict(layers="local_attention(window=0)"), "window"),
])
def test_bad_options_fail_when_the_model_is_built(kwargs, needle):
    with pytest.raises(ValueError) as info:
        linmix.LanguageModel(V, d_model=16, max_len=32, **kwargs)
    assert needle in str(info.value)
    if "mixer_options" not in kwargs and "window=0" not in kwargs["layers"]:
        with pytest.raises(ValueError, match="windw"):
            ModelConfig(head="lm", vocab_size=V, **kwargs).resolved()
