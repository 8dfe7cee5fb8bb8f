"""linmix.convert on Hugging Face GPT-2 and Llama models (tiny ones built from config classes, no downloads)."""
from __future__ import annotations

import copy

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install 'linmix[hf]')")
if int(transformers.__version__.split(".")[0]) < 5:
    pytest.skip("linmix.convert follows the transformers 5 attention interfaces", allow_module_level=True)

import linmix  # noqa: E402
from convert_helpers import (assert_causal, assert_unchanged, grads_by_name, snapshot, tiny_gpt2,  # noqa: E402
                             tiny_llama)
from linmix.convert.adapters import HFAttentionAdapter  # noqa: E402

MAKERS = {"gpt2": tiny_gpt2, "llama": tiny_llama}
ATTN = {"gpt2": "transformer.h.{}.attn", "llama": "model.layers.{}.self_attn"}
V = 50


def left_padded(B: int = 2, T: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, V, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[0, :3] = 0
    return ids, mask


@pytest.mark.parametrize("family", list(MAKERS))
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_attention_mixer_reproduces_the_model(family, impl):
    """Proves the weight mapping (Conv1D transposes, GQA head repeats) and Llama's rotary positions.

    Float64, except eager Llama: its float64 padding mask (finfo.min added to the scores) overflows to -inf,
    so fully padded rows turn NaN and the NaN reaches real rows through the values; float32 is exact there.
    """
    model = MAKERS[family](attn_implementation=impl)
    model = model if (impl, family) == ("eager", "llama") else model.double()
    ids, mask = left_padded()
    ref, ref_padded = model(ids).logits, model(ids, attention_mask=mask).logits
    converted, report = linmix.convert(copy.deepcopy(model), mixer="attention")
    assert report.replaced_paths == [ATTN[family].format(i) for i in range(2)]
    torch.testing.assert_close(converted(ids).logits, ref, atol=1e-5, rtol=1e-5)
    real = mask.bool()
    torch.testing.assert_close(converted(ids, attention_mask=mask).logits[real], ref_padded[real], atol=1e-5, rtol=1e-5)
    if family == "llama":
        assert converted.model.layers[0].self_attn.mixer.rotary is True
        assert "key/value heads repeated x2" in report.replaced[0].initialised
    else:
        assert "c_attn, c_proj (Conv1D, transposed)" in report.replaced[0].initialised


def test_gpt2_score_scaling_by_layer_is_folded_into_the_queries():
    model = tiny_gpt2(scale_attn_by_inverse_layer_idx=True).double()
    ids = torch.randint(0, V, (2, 8))
    converted, _ = linmix.convert(copy.deepcopy(model), mixer="attention")
    torch.testing.assert_close(converted(ids).logits, model(ids).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", list(MAKERS))
@pytest.mark.parametrize("mixer", ["linear_attention", "summation", "local_attention"])
def test_converted_models_are_causal(family, mixer):
    model = MAKERS[family]().double()
    converted, _ = linmix.convert(model, mixer=mixer, **({"window": 3} if mixer == "local_attention" else {}))
    assert_causal(lambda ids: converted(ids).logits, torch.randint(0, V, (2, 8)), vocab=V)


@pytest.mark.parametrize("family", list(MAKERS))
def test_padded_tokens_cannot_change_real_outputs(family):
    converted, _ = linmix.convert(MAKERS[family](), mixer="linear_attention")
    ids, mask = left_padded()
    other = ids.clone()
    other[0, :3] = torch.randint(1, V, (3,))
    real = mask.bool()
    torch.testing.assert_close(converted(ids, attention_mask=mask).logits[real],
                               converted(other, attention_mask=mask).logits[real])


@pytest.mark.parametrize("family", list(MAKERS))
def test_keep_indices_ratio_and_auto(family):
    model = MAKERS[family](**({"n_layer": 4} if family == "gpt2" else {"num_hidden_layers": 4}))
    paths = [ATTN[family].format(i) for i in range(4)]
    converted, report = linmix.convert(copy.deepcopy(model), mixer="linear_attention", keep=[-1])
    assert report.replaced_paths == paths[:3] and list(report.kept) == paths[3:]
    assert type(converted.get_submodule(paths[3])).__name__.endswith("Attention")
    _, report = linmix.convert(copy.deepcopy(model), mixer="linear_attention", keep=0.25)
    assert list(report.kept) == [paths[2]]
    ids = torch.randint(0, V, (2, 12))
    _, report = linmix.convert(copy.deepcopy(model), mixer="linear_attention", keep="auto", calibration=ids,
                               auto_keep=0.5)
    ranked = sorted(report.scores, key=report.scores.get, reverse=True)
    assert sorted(report.kept) == sorted(ranked[:2]) and set(report.scores) == set(paths)
    assert model.config.use_cache is True  # calibration left the original's settings alone


def test_cache_is_turned_off_and_generation_recomputes_the_prefix():
    converted, report = linmix.convert(tiny_gpt2(), mixer="linear_attention")
    assert converted.config.use_cache is False and converted.generation_config.use_cache is False
    assert any("use_cache=False" in note for note in report.notes)
    ids = torch.randint(0, V, (1, 4))
    out = converted.generate(ids, do_sample=False, max_new_tokens=5, pad_token_id=0)
    expected = ids
    with torch.no_grad():
        for _ in range(5):
            expected = torch.cat([expected, converted(expected).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, expected)
    with pytest.raises(ValueError, match=r"transformer\.h\.0\.attn: a converted layer keeps no KV cache; run the "
                                         "model with use_cache=False"):
        converted(ids, use_cache=True)


def test_the_adapter_takes_positional_arguments_and_returns_the_modules_tuple():
    model = tiny_llama().double()
    converted, _ = linmix.convert(copy.deepcopy(model), mixer="attention")
    adapter, original = converted.model.layers[0].self_attn, model.model.layers[0].self_attn
    assert isinstance(adapter, HFAttentionAdapter) and adapter.layer_idx == 0
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    pos = torch.arange(5)[None]
    cos_sin = model.model.rotary_emb(x, pos)
    out, weights = adapter(x, cos_sin, None)
    assert weights is None
    torch.testing.assert_close(out, original(x, cos_sin, None)[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="position_ids do not count up by one"):
        adapter(x, position_embeddings=cos_sin, position_ids=torch.tensor([[0, 1, 2, 0, 1]]))
    with pytest.raises(ValueError, match="not causal masking plus key padding"):
        adapter(x, attention_mask=torch.ones(2, 1, 5, 5, dtype=torch.bool))


def test_gpt2_cross_attention_is_kept_and_named():
    model = tiny_gpt2(add_cross_attention=True)
    converted, report = linmix.convert(copy.deepcopy(model), mixer="linear_attention")
    assert report.replaced_paths == ["transformer.h.0.attn", "transformer.h.1.attn"]
    assert "GPT-2 cross-attention" in report.kept["transformer.h.0.crossattention"]
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"transformer\.h\.0\.crossattention: cannot replace cross-attention"):
        linmix.convert(model, mixer="linear_attention", cross_attention="replace")
    assert_unchanged(model, before)


def test_an_unknown_attention_class_fails_before_anything_changes():
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                 vocab_size=V))
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"encoder\.layer\.0\.attention: no converter for attention class "
                                         "BertAttention"):
        linmix.convert(model, mixer="linear_attention")
    assert_unchanged(model, before)
    model = tiny_llama()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"model\.layers\.0\.self_attn: mixer 'summation' does not take option"):
        linmix.convert(model, mixer="summation", window=3)
    with pytest.raises(ValueError, match="causal=False conflicts with the host"):
        linmix.convert(model, mixer="linear_attention", causal=False)
    assert_unchanged(model, before)


def test_llama_positions_lost_by_a_mixer_without_rotary_are_noted():
    _, report = linmix.convert(tiny_llama(), mixer="linear_attention")
    assert any("rotary positions are not applied by linear_attention" in n for n in report.notes)
    _, report = linmix.convert(tiny_llama(rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
                               mixer="attention")
    assert any("theta=500000" in n and "approximated" in n for n in report.notes)


@pytest.mark.parametrize("family", list(MAKERS))
def test_gradients_reach_the_model_or_only_the_new_mixers(family):
    model = MAKERS[family]().train()
    ids = torch.randint(0, V, (2, 6))
    converted, _ = linmix.convert(copy.deepcopy(model), mixer="linear_attention")
    grads = grads_by_name(converted, converted(ids, labels=ids).loss)
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    frozen, _ = linmix.convert(copy.deepcopy(model), mixer="linear_attention", freeze=True)
    grads = grads_by_name(frozen, frozen(ids, labels=ids).loss)
    trainable = {n for n, g in grads.items() if g is not None}
    assert trainable and all(".mixer." in n for n in trainable)
    assert len(trainable) == len([n for n, p in frozen.named_parameters() if p.requires_grad])


def test_the_report_counts_parameters():
    model = tiny_llama()
    before = sum(p.numel() for p in model.parameters())
    converted, report = linmix.convert(model, mixer="linear_attention")
    assert report.params_before == before and report.params_after == sum(p.numel() for p in converted.parameters())
    assert report.params_after > before  # GQA keys/values are repeated to every query head, and biases added
    assert "model.layers.1.self_attn" in str(report) and "LlamaAttention" in str(report)
