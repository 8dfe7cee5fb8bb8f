"""Stage 2 of distilling a converted model: a short end-to-end finetune, as LoLCATs (arXiv 2410.10254)
follows attention transfer with.

After transfer each mixer imitates its teacher on the teacher's inputs; run end to end, the small errors
of every layer compound. Recovery trains the whole converted model on next-token loss, optionally mixed
with ``KL(teacher || model)`` of the next-token distributions: ``loss = (1 - kl_weight) * CE +
kl_weight * KL``. The teacher is a separate model (e.g. the original before conversion) or ``"kept"``:
the converted model itself with every kept teacher put back in its layer for that pass, which computes
exactly what the original model did, without a second copy of it. The converted layers run as students
only (no transfer hooks), and only the new mixers' parameters train, or with ``lora_rank > 0`` the
mixers' parameters except their copied projections, which get low-rank adapters instead
(:mod:`linmix.distill.lora`).
"""
from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from torch import nn

from linmix.convert.teachers import Converted, converted_layers, place_teacher
from linmix.distill.batches import Batch, call_model, kl_to_teacher, logits_of, next_token_loss
from linmix.distill.lora import add_lora, lora_bases
from linmix.distill.stage import Stage, run_stage
from linmix.distill.transfer import mixer_parameters

LOG = "recovery.jsonl"
PLOT = "recovery_loss.png"
KEPT = "kept"


@contextlib.contextmanager
def teachers_in_place(model: nn.Module, layers: list[Converted]):
    """Every converted layer's kept teacher back where it was (the model computes as the original did),
    the converted layers again afterwards."""
    swapped = []
    try:
        for layer in layers:
            parent_path, _, attr = layer.path.rpartition(".")
            parent = model.get_submodule(parent_path) if parent_path else model
            setattr(parent, attr, place_teacher(layer))
            swapped.append((parent, attr, layer.module))
        yield
    finally:
        for parent, attr, module in swapped:
            setattr(parent, attr, module)


def teacher_logits(model: nn.Module, teacher: nn.Module | str, batch: Batch, layers: list[Converted]) -> torch.Tensor:
    """The teacher's logits on ``batch`` (no gradients, the teacher in eval mode)."""
    with torch.no_grad():
        if isinstance(teacher, str):
            was_training = model.training
            model.eval()
            try:
                with teachers_in_place(model, layers):
                    return logits_of(call_model(model, batch)).detach()
            finally:
                model.train(was_training)
        teacher.eval()
        return logits_of(call_model(teacher, batch)).detach()


def _check(teacher: Any, kl_weight: float) -> None:
    if isinstance(kl_weight, bool) or not isinstance(kl_weight, (int, float)) or not 0 <= kl_weight <= 1:
        raise ValueError(f"kl_weight must lie in [0, 1] (0: next-token loss only, 1: KL only), got {kl_weight!r}")
    if teacher is None and kl_weight > 0:
        raise ValueError("kl_weight > 0 needs a teacher: a model, or teacher='kept' for the teachers kept by "
                         "convert(..., keep_teacher=True)")
    if isinstance(teacher, str) and teacher != KEPT:
        raise ValueError(f"teacher must be a model, None or {KEPT!r}, got {teacher!r}")
    if teacher is not None and not isinstance(teacher, (str, nn.Module)):
        raise ValueError(f"teacher must be a model, None or {KEPT!r}, got {type(teacher).__name__}")


def recovery_losses(model: nn.Module, batch: Batch, teacher: nn.Module | str | None = None) -> dict[str, float]:
    """Next-token loss (and ``kl`` to ``teacher`` when given) of ``model`` on ``batch`` now, in eval mode."""
    _check(teacher, 0.0)
    layers = converted_layers(model, need_teachers=teacher == KEPT)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            logits = logits_of(call_model(model, batch))
            values = {"next_token": float(next_token_loss(logits, batch))}
            if teacher is not None:
                values["kl"] = float(kl_to_teacher(logits, teacher_logits(model, teacher, batch, layers), batch))
        return values
    finally:
        model.train(was_training)


def recover(model: nn.Module, batches: Any, steps: int, lr: float = 1e-4, teacher: nn.Module | str | None = None,
            kl_weight: float = 0.0, lora_rank: int = 0, out: str | os.PathLike | None = None,
            progress: bool = True, lora_alpha: float | None = None, log_every: int = 10,
            save_every: int = 100) -> dict[str, float]:
    """Finetune the converted ``model`` end to end for ``steps`` AdamW steps (see the module doc).

    Args:
        model: converted by :func:`linmix.convert` (teachers kept only if ``teacher="kept"``); trained in place.
        batches: token batches with next-token targets (see :mod:`linmix.distill.batches`).
        steps, lr: optimizer steps and the (constant) learning rate.
        teacher: None, a model whose logits to match, or ``"kept"``; ``kl_weight`` mixes its KL in.
        lora_rank: > 0 adds adapters of that rank (scale ``lora_alpha / rank``, default 1) to the mixers'
            copied projections, which then stay frozen; they remain attached (merge with
            :func:`linmix.distill.merge_lora`).
        out: folder for ``recovery.jsonl`` (``loss``, ``next_token``, ``kl`` every ``log_every`` steps),
            ``recovery_loss.png`` and the resumable ``state/`` (see :mod:`linmix.distill.stage`).

    Returns:
        The final losses: means over the last ``log_every`` steps.
    """
    _check(teacher, kl_weight)
    layers = converted_layers(model, need_teachers=teacher == KEPT)
    if lora_rank:
        add_lora(model, lora_rank, lora_alpha)
    bases = lora_bases(model)
    params = {n: p for n, p in mixer_parameters(model, layers).items() if id(p) not in bases}

    def step_loss(batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logits = logits_of(call_model(model, batch))
        ce = next_token_loss(logits, batch)
        values = {"next_token": float(ce.detach())}
        loss = ce
        if teacher is not None:
            kl = kl_to_teacher(logits, teacher_logits(model, teacher, batch, layers), batch)
            values["kl"] = float(kl.detach())
            loss = (1 - kl_weight) * ce + kl_weight * kl
        values["loss"] = float(loss.detach())
        return loss, values

    kind = None if teacher is None else (KEPT if isinstance(teacher, str) else "model")
    settings = {"lr": lr, "kl_weight": kl_weight, "lora_rank": lora_rank, "lora_alpha": lora_alpha,
                "teacher": kind, "layers": [layer.path for layer in layers]}
    stage = Stage("recovery", params, step_loss, settings, train_mode=True)
    final = run_stage(stage, model, batches, steps, lr, out, log_every=log_every, save_every=save_every,
                      progress=progress)
    if out is not None:
        from linmix.distill.report import plot_log

        plot_log(os.path.join(out, LOG), os.path.join(out, PLOT), "recovery", log_y=False)
    return final
