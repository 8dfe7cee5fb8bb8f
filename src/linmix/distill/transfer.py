"""Stage 1 of distilling a converted model: attention transfer, as in LoLCATs (arXiv 2410.10254) and
Hedgehog (arXiv 2402.04347).

Every converted layer is fitted to the attention it replaced, on that attention's own inputs: forward
hooks make each converted layer also run its kept teacher (``convert(..., keep_teacher=True)``) on the
same arguments, score the mixer's output against the teacher's, and hand the *teacher's* output on to the
rest of the model. So every layer sees exactly the inputs the original model would give it, whatever the
other mixers currently do, and all layers train independently in one forward pass (the summed loss has one
term per layer, and each mixer's gradient comes from its own term only). The forward stops once the last
converted layer has run: the layers after it and the output head are not needed.

Only the new mixers' parameters train; everything else is frozen for the stage (checked on the first
step), and the model runs in eval mode, so the teacher stream is the original model's inference-time
activations. Losses: ``"mse"``, the mean squared error of the outputs, or ``"nl2"``, the normalised
squared error ``||y - t||^2 / ||t||^2`` of the batch (scale-free, so layers of any output size weigh the
same). Padded positions (a batch's ``attention_mask``/``padding_mask``) are left out.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from torch import nn

from linmix.convert.teachers import Converted, converted_layers, place_teacher
from linmix.distill.batches import Batch, call_model, real_positions
from linmix.distill.lora import lora_targets
from linmix.distill.stage import Stage, run_stage

LOSSES = ("mse", "nl2")
LOG = "transfer.jsonl"
PLOT = "transfer_loss.png"


class _Stop(Exception):
    """Raised by the last converted layer's hook: nothing after it is needed."""


def layer_loss(y: torch.Tensor, t: torch.Tensor, real: torch.Tensor | None, kind: str) -> torch.Tensor:
    """The loss of mixer output ``y`` against teacher output ``t`` (float32), over real positions."""
    y, t = y.float(), t.float()
    if real is not None and y.dim() >= 3:
        if real.shape == y.shape[:2]:
            y, t = y[real], t[real]
        elif real.shape == y.shape[:2][::-1]:  # a torch MultiheadAttention that is not batch_first
            y, t = y[real.T], t[real.T]
    error = (y - t).pow(2)
    if kind == "mse":
        return error.mean()
    return error.sum() / t.pow(2).sum().clamp_min(1e-12)


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _with_first(output: Any, value: torch.Tensor) -> Any:
    if isinstance(output, tuple):
        return (value, *output[1:])
    if isinstance(output, list):
        return [value, *output[1:]]
    return value


@contextlib.contextmanager
def teacher_stream(layers: list[Converted], losses: dict[str, torch.Tensor], real: torch.Tensor | None,
                   kind: str, stop: bool = True):
    """While active, each converted layer also runs its teacher on its own arguments, puts its loss in
    ``losses[path]`` and passes the teacher's output on; with ``stop`` the forward ends (:class:`_Stop`)
    once every layer has run."""
    def hook_for(layer: Converted, teacher: nn.Module):
        def hook(module, args, kwargs, output):
            with torch.no_grad():
                target = _first(teacher(*args, **kwargs))
            y = _first(output)
            target = target.to(y.dtype).detach()
            losses[layer.path] = layer_loss(y, target, real, kind)
            if stop and len(losses) == len(layers):
                raise _Stop
            return _with_first(output, target)
        return hook

    handles = [layer.module.register_forward_hook(hook_for(layer, place_teacher(layer)), with_kwargs=True)
               for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def layer_losses(model: nn.Module, batch: Batch, kind: str, layers: list[Converted]) -> dict[str, torch.Tensor]:
    """Every converted layer's loss on ``batch`` (with autograd, as the model's mode and flags allow)."""
    losses: dict[str, torch.Tensor] = {}
    with teacher_stream(layers, losses, real_positions(batch), kind):
        try:
            call_model(model, batch)
        except _Stop:
            pass
    missing = [layer.path for layer in layers if layer.path not in losses]
    if missing:
        raise ValueError(f"{missing[0]} did not run on the batch; give input that reaches every converted layer")
    return {layer.path: losses[layer.path] for layer in layers}


@torch.no_grad()
def transfer_losses(model: nn.Module, batch: Batch, loss: str = "mse") -> dict[str, float]:
    """Each converted layer's transfer loss on ``batch`` now (eval mode, nothing trained): how far every
    mixer is from its teacher on the teacher's own inputs. ``{path: loss}`` in model order."""
    _check_loss(loss)
    layers = converted_layers(model, need_teachers=True)
    was_training = model.training
    try:
        model.eval()
        return {path: float(v) for path, v in layer_losses(model, batch, loss, layers).items()}
    finally:
        model.train(was_training)


def mixer_parameters(model: nn.Module, layers: list[Converted]) -> dict[str, nn.Parameter]:
    """The converted mixers' parameters by their names in ``model``, in model order."""
    wanted = {id(p) for layer in layers for p in layer.mixer.parameters()}
    return {name: p for name, p in model.named_parameters() if id(p) in wanted}


def attention_transfer(model: nn.Module, batches: Any, steps: int, lr: float = 1e-3, loss: str = "mse",
                       out: str | os.PathLike | None = None, progress: bool = True, log_every: int = 10,
                       save_every: int = 100, freeze_copied: bool = False) -> dict[str, float]:
    """Fit every converted mixer of ``model`` to its kept teacher for ``steps`` AdamW steps (see the module doc).

    Args:
        model: converted with ``linmix.convert(..., keep_teacher=True)``; trained in place.
        batches: the model's inputs (see :mod:`linmix.distill.batches`); only the forward is used.
        steps, lr: optimizer steps and the (constant) learning rate.
        loss: ``"mse"`` or ``"nl2"``.
        out: folder for ``transfer.jsonl`` (per-layer losses every ``log_every`` steps), the plot
            ``transfer_loss.png`` (one line per layer, log scale) and the resumable ``state/`` (every
            ``save_every`` steps and at the end; see :mod:`linmix.distill.stage`). None: nothing written.
        freeze_copied: train only what the mixers did not copy from the attention they replaced (e.g. the
            feature maps of ``window_linear_attention``), as the first stage of LoLCATs does; the copied
            q/k/v/out projections stay as converted.

    Returns:
        ``{layer path: loss}``: each layer's mean loss over the last ``log_every`` steps. Usable as
        ``linmix.convert(fresh_model, keep="auto", scores=...)``: keep the layers imitated worst.
    """
    _check_loss(loss)
    layers = converted_layers(model, need_teachers=True)
    params = mixer_parameters(model, layers)
    if freeze_copied:
        copied = {id(p) for linear in lora_targets(model).values() for p in linear.parameters()}
        params = {name: p for name, p in params.items() if id(p) not in copied}
        if not params:
            raise ValueError("freeze_copied=True leaves nothing to train: the converted mixers hold only projections "
                             "copied from the attention they replaced")
    teachers = [p for layer in layers for p in place_teacher(layer).parameters()]

    def step_loss(batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        losses = layer_losses(model, batch, loss, layers)
        total = torch.stack(list(losses.values())).sum()
        return total, {path: float(v.detach()) for path, v in losses.items()}

    settings = {"loss": loss, "lr": lr, "layers": [layer.path for layer in layers]}
    if freeze_copied:  # only when set, so states written before the option existed still resume
        settings["freeze_copied"] = True
    stage = Stage("transfer", params, step_loss, settings, train_mode=False)
    final = run_stage(stage, model, batches, steps, lr, out, log_every=log_every, save_every=save_every,
                      progress=progress, frozen_extra=teachers)
    if out is not None:
        from linmix.distill.report import plot_log

        plot_log(os.path.join(out, LOG), os.path.join(out, PLOT), f"attention transfer ({loss}), per layer")
    return final


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
