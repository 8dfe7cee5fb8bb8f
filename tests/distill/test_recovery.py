"""Recovery: next-token / KL finetuning of the converted model, optionally through LoRA adapters."""
from __future__ import annotations

import pytest
import torch

from distill_helpers import FAMILIES, converted, ids_batch, make, tiny_lm
from linmix.convert.teachers import converted_layers
from linmix.distill import add_lora, merge_lora, recover, recovery_losses
from linmix.distill.batches import logits_of
from linmix.distill.lora import lora_parameters
from linmix.distill.stage import read_log



def logits(model, batch):
    with torch.no_grad():
        return logits_of(model.eval()(batch))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_kept_teachers_put_back_are_the_original_model(family):
    original, model = converted(make(family), mixer="summation")
    batch = ids_batch()
    with_model = recovery_losses(model, batch, teacher=original)
    with_kept = recovery_losses(model, batch, teacher="kept")
    assert with_model["kl"] > 1e-3
    assert with_kept == pytest.approx(with_model, rel=1e-5)
    assert all(model.get_submodule(layer.path) is layer.module for layer in converted_layers(model))  # swapped back


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("teacher", ["model", "kept"])
def test_recovery_with_kl_to_the_teacher_lowers_the_kl(family, teacher, tmp_path):
    original, model = converted(make(family), mixer="summation")
    batch = ids_batch()
    target = original if teacher == "model" else "kept"
    before = recovery_losses(model, batch, teacher=target)["kl"]
    final = recover(model, [batch], steps=30, lr=3e-3, teacher=target, kl_weight=1.0, out=tmp_path, progress=False)
    after = recovery_losses(model, batch, teacher=target)["kl"]
    assert after < 0.5 * before, (before, after)
    assert final["loss"] == pytest.approx(final["kl"])  # kl_weight=1: KL alone
    assert [r["step"] for r in read_log(tmp_path / "recovery.jsonl")] == [0, 10, 20, 30]
    assert (tmp_path / "recovery_loss.png").is_file()


def test_recovery_on_next_token_loss_alone_lowers_it():
    _, model = converted(tiny_lm(), mixer="summation")
    batch = ids_batch()
    before = recovery_losses(model, batch)["next_token"]
    recover(model, [batch], steps=20, lr=3e-3, progress=False)
    assert recovery_losses(model, batch)["next_token"] < before


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_starts_as_a_no_op_and_only_lora_and_mixer_parameters_train(family):
    original, model = converted(make(family))
    batch = ids_batch()
    reference = logits(model, batch)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    paths = add_lora(model, rank=2)
    assert len(paths) == 4 * len(converted_layers(model))  # q, k, v, out of every converted mixer
    assert all(torch.equal(p, torch.zeros_like(p)) for n, p in lora_parameters(model).items() if n.endswith("lora_b"))
    torch.testing.assert_close(logits(model, batch), reference, rtol=0, atol=0)  # B = 0: exactly the same model

    recover(model, [batch], steps=5, lr=1e-3, teacher=original, kl_weight=0.5, lora_rank=2, progress=False)
    mixers = {id(p) for layer in converted_layers(model) for p in layer.mixer.parameters()}
    lora = lora_parameters(model)
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in lora.items() if n.endswith("lora_b"))
    for name, p in model.named_parameters():
        old = name.replace(".parametrizations.weight.original", ".weight")
        if name in lora:
            continue
        if ".parametrizations.weight.original" in name:  # a projection under LoRA: frozen
            assert torch.equal(p, before[old]), name
        elif id(p) not in mixers:  # outside the mixers: frozen
            assert torch.equal(p, before[name]), name
    changed_biases = [n for n, p in model.named_parameters() if n.endswith("bias") and id(p) in mixers
                      and not torch.equal(p, before[n])]
    assert changed_biases, "the mixers' own parameters beside the adapted weights keep training"


def test_merge_lora_gives_back_plain_layers_with_the_same_outputs(tmp_path):
    import linmix

    original, model = converted(tiny_lm())
    batch = ids_batch()
    recover(model, [batch], steps=5, lr=1e-2, teacher=original, kl_weight=1.0, lora_rank=2, progress=False)
    adapted = logits(model, batch)
    assert merge_lora(model) == 12
    assert not lora_parameters(model)
    torch.testing.assert_close(logits(model, batch), adapted, rtol=1e-5, atol=1e-6)
    loaded = linmix.load_pretrained(model.save_pretrained(tmp_path / "m"))
    torch.testing.assert_close(logits(loaded, batch), adapted, rtol=1e-5, atol=1e-6)


def test_bad_recovery_settings_are_one_line_errors():
    _, model = converted(tiny_lm())
    batch = ids_batch()
    with pytest.raises(ValueError, match="kl_weight > 0 needs a teacher"):
        recover(model, [batch], steps=1, kl_weight=0.5, progress=False)
    with pytest.raises(ValueError, match=r"kl_weight must lie in \[0, 1\]"):
        recover(model, [batch], steps=1, kl_weight=2.0, teacher="kept", progress=False)
    with pytest.raises(ValueError, match="teacher must be a model, None or 'kept'"):
        recover(model, [batch], steps=1, teacher="original", progress=False)
    with pytest.raises(ValueError, match="lora_rank must be a positive integer"):
        add_lora(model, rank=-1)
    with pytest.raises(ValueError, match="nothing to adapt"):
        recover(converted(tiny_lm(), mixer="summation")[1], [batch], steps=1, lora_rank=2, progress=False)
