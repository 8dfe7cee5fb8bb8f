"""Attention transfer: every converted layer learns its teacher on the teacher's inputs, nothing else moves."""
from __future__ import annotations

import copy

import pytest
import torch

import linmix
from distill_helpers import FAMILIES, converted, ids_batch, make, tiny_lm
from linmix.convert.teachers import converted_layers, drop_teachers
from linmix.distill import attention_transfer, transfer_losses
from linmix.distill.stage import read_log

#: the converted layer whose input the stream check watches (not the first: its input is the embedding)
SECOND = {"gpt2": "transformer.h.1.attn", "linmix": "encoder.layers.1.mixer"}


def mixer_ids(model) -> set[int]:
    return {id(p) for layer in converted_layers(model) for p in layer.mixer.parameters()}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("loss", ["mse", "nl2"])
def test_transfer_lowers_every_layers_loss_on_a_fixed_batch(family, loss, tmp_path):
    _, model = converted(make(family))
    batch = ids_batch()
    before = transfer_losses(model, batch, loss)
    final = attention_transfer(model, [batch], steps=30, lr=1e-3, loss=loss, out=tmp_path, progress=False)
    after = transfer_losses(model, batch, loss)
    assert list(after) == list(before) == list(final) == [layer.path for layer in converted_layers(model)]
    assert all(after[p] < before[p] for p in before), (before, after)
    log = read_log(tmp_path / "transfer.jsonl")
    assert [r["step"] for r in log] == [0, 10, 20, 30]
    assert log[0]["losses"] == pytest.approx(before, rel=1e-5)  # step 0: the plain swap, before any update
    assert (tmp_path / "transfer_loss.png").stat().st_size > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_only_the_new_mixers_change_and_the_teachers_stay_frozen(family):
    _, model = converted(make(family))
    new = mixer_ids(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    teachers = [copy.deepcopy(layer.record.teacher.state_dict()) for layer in converted_layers(model)]
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    attention_transfer(model, [ids_batch()], steps=5, lr=1e-3, progress=False)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    named = dict(model.named_parameters())
    assert changed and all(id(named[n]) in new for n in changed)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if id(p) not in new)
    for layer, saved in zip(converted_layers(model), teachers):
        assert all(torch.equal(v, saved[k]) for k, v in layer.record.teacher.state_dict().items())
        assert not any(p.requires_grad for p in layer.record.teacher.parameters())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags  # restored after the stage


@pytest.mark.parametrize("family", FAMILIES)
def test_the_next_layer_sees_the_teachers_output_during_transfer(family):
    original, model = converted(make(family))
    batch = ids_batch()
    path = SECOND[family]
    seen: dict[str, list[torch.Tensor]] = {"original": [], "transfer": [], "converted": []}

    def recorder(key):
        def hook(module, args, kwargs):
            x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            seen[key].append(x.detach().clone())
        return hook

    original.get_submodule(path).register_forward_pre_hook(recorder("original"), with_kwargs=True)
    with torch.no_grad():
        original(batch)
    handle = model.get_submodule(path).register_forward_pre_hook(recorder("transfer"), with_kwargs=True)
    attention_transfer(model, [batch], steps=6, lr=3e-3, progress=False)
    handle.remove()
    assert len(seen["transfer"]) == 6
    for x in seen["transfer"]:  # every step, after the first layer's mixer has moved: still the teacher's stream
        torch.testing.assert_close(x, seen["original"][0], rtol=1e-5, atol=1e-6)
    model.get_submodule(path).register_forward_pre_hook(recorder("converted"), with_kwargs=True)
    with torch.no_grad():
        model.eval()(batch)
    assert not torch.allclose(seen["converted"][0], seen["original"][0], atol=1e-6), \
        "run normally the converted model's second layer sees the students' stream: the check above is not vacuous"


def test_transfer_needs_the_teachers_and_a_known_loss():
    model, _ = linmix.convert(tiny_lm(), mixer="linear_attention")
    with pytest.raises(ValueError, match="keep_teacher=True"):
        attention_transfer(model, [ids_batch()], steps=1, progress=False)
    with pytest.raises(ValueError, match="no layer converted"):
        attention_transfer(tiny_lm(), [ids_batch()], steps=1, progress=False)
    _, model = converted(tiny_lm())
    with pytest.raises(ValueError, match="loss must be one of mse, nl2"):
        attention_transfer(model, [ids_batch()], steps=1, loss="l1", progress=False)
    assert drop_teachers(model) == 3
    with pytest.raises(ValueError, match="keep_teacher=True"):
        transfer_losses(model, ids_batch())


def test_keeping_teachers_leaves_the_converted_model_as_it_was(tmp_path):
    plain, report = linmix.convert(tiny_lm(), mixer="linear_attention")
    _, kept = converted(tiny_lm())
    assert plain.state_dict().keys() == kept.state_dict().keys()
    assert sum(p.numel() for p in kept.parameters()) == report.params_after
    loaded = linmix.load_pretrained(kept.save_pretrained(tmp_path / "m")).eval()
    torch.testing.assert_close(loaded(ids_batch()), kept(ids_batch()))


def test_transfer_losses_rank_the_layers_for_keep_auto():
    _, model = converted(tiny_lm(), mixer="summation")
    final = attention_transfer(model, [ids_batch()], steps=3, lr=1e-3, progress=False)
    worst = max(final, key=final.get)
    _, report = linmix.convert(tiny_lm(), mixer="summation", keep="auto", auto_keep=1, scores=final)
    assert list(report.kept) == [worst] and report.scores == final
    with pytest.raises(ValueError, match="scores has no number for encoder.layers.2.mixer"):
        linmix.convert(tiny_lm(), mixer="summation", keep="auto", scores={k: final[k] for k in list(final)[:2]})
    with pytest.raises(ValueError, match="pass keep='auto' with it"):
        linmix.convert(tiny_lm(), mixer="summation", scores=final)


def test_transfer_on_a_torch_transformer_encoder():
    torch.manual_seed(6)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    model, _ = linmix.convert(model, mixer="linear_attention", keep_teacher=True)
    x = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(7))
    before = transfer_losses(model, x)
    attention_transfer(model, [x], steps=20, lr=1e-3, progress=False)
    after = transfer_losses(model, x)
    assert list(after) == ["layers.0.self_attn", "layers.1.self_attn"]
    assert all(after[p] < before[p] for p in before)


def test_teachers_follow_their_mixers_to_another_dtype():
    """``model.to(...)`` after conversion does not move the teachers (they are not submodules): distillation
    places each one beside its mixer."""
    _, model = converted(tiny_lm())
    model = model.double()
    teacher = converted_layers(model)[0].record.teacher
    assert next(teacher.parameters()).dtype == torch.float32
    losses = transfer_losses(model, ids_batch())
    assert next(teacher.parameters()).dtype == torch.float64 and all(v > 0 for v in losses.values())
