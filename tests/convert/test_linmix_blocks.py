"""linmix.convert on linmix's own models: Block / SequenceEncoder attention layers, config kept in step."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import linmix
from convert_helpers import assert_causal, assert_unchanged, grads_by_name, snapshot
from linmix.mixers.linear_attention import LinearAttention

V = 40


def lm(layers: str = "attention*3", **kw) -> linmix.LanguageModel:
    return linmix.LanguageModel(V, d_model=32, layers=layers, max_len=64, n_heads=kw.pop("n_heads", 4), **kw).eval()


def test_attention_to_attention_is_exact_and_linear_attention_is_initialised_from_qkv():
    model = lm()
    ids = torch.randint(0, V, (2, 10))
    converted, report = linmix.convert(copy.deepcopy(model), mixer="attention")
    torch.testing.assert_close(converted(ids), model(ids))
    assert report.initialised["encoder.layers.0.mixer"] == "qkv, out <- qkv, out"
    converted, report = linmix.convert(copy.deepcopy(model), mixer="linear_attention")
    new, old = converted.encoder.layers[0].mixer, model.encoder.layers[0].mixer
    assert isinstance(new, LinearAttention)
    torch.testing.assert_close(torch.cat([new.q.weight, new.k.weight, new.v.weight]), old.qkv.weight)
    torch.testing.assert_close(new.out.bias, old.out.bias)
    assert report.initialised["encoder.layers.2.mixer"] == "q, k, v, out <- qkv, out"


def test_config_layers_follow_the_conversion_and_the_model_saves_and_loads(tmp_path):
    model = lm("summation,attention(n_heads=2),attention,local_attention(window=4)")
    converted, report = linmix.convert(model, mixer="linear_attention", keep=[-1])
    assert converted.encoder.layer_names == ["summation", "linear_attention", "linear_attention", "local_attention"]
    assert converted.config.layers == "summation,linear_attention(n_heads=2),linear_attention,local_attention(window=4)"
    assert report.replaced_paths == ["encoder.layers.1.mixer", "encoder.layers.2.mixer"]
    ids = torch.randint(0, V, (2, 10))
    loaded = linmix.LanguageModel.from_pretrained(converted.save_pretrained(tmp_path / "m")).eval()
    torch.testing.assert_close(loaded(ids), converted(ids))


def test_rotary_and_model_level_options_are_not_repeated_inline(tmp_path):
    model = lm("attention*2", positional="rotary", mixer_options={"local_attention": {"window": 8}})
    converted, _ = linmix.convert(model, mixer="local_attention", n_heads=2)
    assert converted.config.layers == "local_attention(n_heads=2)*2"
    mixer = converted.encoder.layers[0].mixer
    assert mixer.rotary and mixer.window == 8 and mixer.n_heads == 2
    ids = torch.randint(0, V, (1, 12))
    loaded = linmix.load_pretrained(converted.save_pretrained(tmp_path / "m")).eval()
    torch.testing.assert_close(loaded(ids), converted(ids))


@pytest.mark.parametrize("mixer", ["linear_attention", "summation", "spectral", "aggregation"])
def test_a_converted_language_model_is_causal_and_generates(mixer):
    converted, _ = linmix.convert(lm().double(), mixer=mixer, keep=[1])
    assert_causal(converted, torch.randint(0, V, (2, 9)), vocab=V)
    out = converted.generate(torch.randint(0, V, (2, 3)), max_new_tokens=4, temperature=0)
    assert out.shape == (2, 7)


def test_a_classifier_converts_bidirectionally_and_ignores_padding():
    model = linmix.Classifier(V, 3, d_model=32, layers="attention*2", max_len=16).eval()
    converted, report = linmix.convert(model, mixer="linear_attention")
    assert all(not m.causal for m in converted.encoder.seq.mixers)
    assert converted.config.layers == "linear_attention*2"
    ids = torch.randint(0, V, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[0, 5:] = False
    other = ids.clone()
    other[0, 5:] = 0
    torch.testing.assert_close(converted(ids, padding_mask=mask), converted(other, padding_mask=mask))


def test_keep_ratio_and_auto_on_a_linmix_model():
    model = lm("attention*4")
    _, report = linmix.convert(copy.deepcopy(model), mixer="linear_attention", keep=0.5)
    assert list(report.kept) == ["encoder.layers.1.mixer", "encoder.layers.3.mixer"]
    ids = torch.randint(0, V, (2, 16))
    converted, report = linmix.convert(copy.deepcopy(model), mixer="linear_attention", keep="auto",
                                       calibration=ids, auto_keep=2)
    ranked = sorted(report.scores, key=report.scores.get, reverse=True)
    assert sorted(report.kept) == sorted(ranked[:2])
    kept = [int(p.split(".")[2]) for p in report.kept]
    assert [converted.encoder.layer_names[i] for i in kept] == ["attention", "attention"]


def test_stand_alone_blocks_and_bare_stacks_convert():
    blocks = nn.Sequential(linmix.Block("attention", 32, 16, causal=True), linmix.Block("summation", 32, 16, True))
    converted, report = linmix.convert(blocks, mixer="linear_attention")
    assert report.replaced_paths == ["0.mixer"] and isinstance(converted[0].mixer, LinearAttention)
    assert_causal(converted, torch.randn(2, 8, 32))
    bare = linmix.Classifier(V, 2, d_model=32, layers="attention", max_len=16, arch="bare")
    converted, report = linmix.convert(bare, mixer="summation")
    assert report.replaced_paths == ["encoder.seq.layers.0"] and converted.config.layers == "summation"


def test_gradients_flow_everywhere_or_only_into_the_new_mixers():
    model = lm().train()
    ids = torch.randint(0, V, (2, 8))
    converted, _ = linmix.convert(copy.deepcopy(model), mixer="linear_attention")
    grads = grads_by_name(converted, converted(ids).logsumexp(-1).mean())
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    frozen, _ = linmix.convert(copy.deepcopy(model), mixer="linear_attention", keep=[0], freeze=True)
    grads = grads_by_name(frozen, frozen(ids).logsumexp(-1).mean())
    trainable = {n for n, g in grads.items() if g is not None}
    assert trainable == {n for n, _ in frozen.named_parameters() if n.startswith(("encoder.layers.1.mixer.",
                                                                                  "encoder.layers.2.mixer."))}


def test_errors_name_the_problem_and_leave_the_model_alone():
    model = lm()
    before = snapshot(model)
    for kwargs, needle in (
        (dict(mixer="wat"), "unknown mixer 'wat'"),
        (dict(mixer="linear_attention", chunk=0), r"encoder\.layers\.0\.mixer: chunk must be a positive integer"),
        (dict(mixer="summation", window=3), r"encoder\.layers\.0\.mixer: mixer 'summation' does not take option"),
        (dict(mixer="fnet"), r"encoder\.layers\.0\.mixer: FNet is bidirectional only|bidirectional only"),
        (dict(mixer="linear_attention", keep=[3]), "keep index 3 is out of range for 3 attention layers"),
        (dict(mixer="linear_attention", cross_attention="swap"), "cross_attention must be 'keep' or 'replace'"),
        (dict(mixer="linear_attention", keep="auto", calibration=torch.randint(0, V, (1, 4)), auto_keep=5),
         r"auto_keep=5 must lie in \[0, 3\]"),
    ):
        with pytest.raises(ValueError, match=needle):
            linmix.convert(model, **kwargs)
        assert_unchanged(model, before)
    with pytest.raises(ValueError, match="no attention layer to convert in LanguageModel"):
        linmix.convert(lm("summation*2"), mixer="linear_attention")


def test_the_report_reads_as_a_table():
    _, report = linmix.convert(lm("attention*2"), mixer="linear_attention", keep=[0])
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == "linmix.convert -> linear_attention: 1 replaced, 1 kept"
    assert lines[1].split() == ["path", "was", "now", "initialised", "from", "old", "weights", "score"]
    assert "encoder.layers.0.mixer  Attention" in text and "kept: keep=[0]" in text
    assert "encoder.layers.1.mixer  Attention  linear_attention(n_heads=4)  q, k, v, out <- qkv, out" in text
    assert "parameters: " in text and "note: config.layers is now 'attention,linear_attention'" in text
