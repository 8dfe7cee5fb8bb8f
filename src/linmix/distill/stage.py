"""The optimisation loop both distillation stages share: AdamW on a chosen set of parameters, a JSONL log
and a resumable state.

With ``out`` a stage writes:

* ``out/<stage>.jsonl``: one line per ``log_every`` steps, ``{"step": s, "losses": {name: mean}}``, the
  means over the steps since the previous line; the line of step 0 holds the losses of the first batch
  under the initial weights (before any update).
* ``out/state/``: a checkpoint every ``save_every`` steps and at the end, written by
  :func:`linmix.train.checkpoint.save_checkpoint` (``checkpoints/step-NNNNNNNN/`` built in a temp folder,
  fsynced, renamed, then named by ``checkpoints/latest.json``; never pickled): the trainable tensors
  (``trainable.safetensors``: the only ones a stage changes), AdamW's state (``optimizer.safetensors``),
  every RNG (``rng.safetensors``), and in ``state.json`` the step, the settings and the loss accumulators.

Running a stage again with the same ``out`` continues from its state: the model is rebuilt by the caller
the same way (converted, teachers kept), the trainable tensors, the optimizer and the RNGs are restored,
and steps ``k .. steps - 1`` run on the batches those steps would have had, so the result equals an
uninterrupted run. A finished state returns its final losses without stepping. The learning rate is
constant, so a run stopped at ``k`` steps and resumed to ``n`` is the same run as one of ``n`` steps.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from linmix.distill.batches import Batch, batch_stream
from linmix.train.checkpoint import (load_checkpoint, latest_checkpoint, restore_rng_state, save_checkpoint,
                                     unflatten_optimizer_state)

STATE = "state"
TRAINABLE = "trainable.safetensors"


@dataclass
class Stage:
    """One distillation stage: its name (the log's file name), the parameters it trains (by model name),
    its loss (``batch -> (loss, {name: value})``), the settings a resumed run must share, and whether the
    model runs in training mode."""

    name: str
    params: dict[str, nn.Parameter]
    loss: Callable[[Batch], tuple[torch.Tensor, dict[str, float]]]
    settings: dict[str, Any] = field(default_factory=dict)
    train_mode: bool = True


class _Tensors:
    """The trainable tensors, in the shape :func:`save_checkpoint` writes a model (its ``save_pretrained``
    and ``named_parameters``)."""

    def __init__(self, params: dict[str, nn.Parameter]) -> None:
        self.params = params

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return iter(self.params.items())

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        save_file({n: p.detach().cpu().contiguous() for n, p in self.params.items()}, str(Path(folder) / TRAINABLE))
        return Path(folder)


@contextlib.contextmanager
def only_trainable(model: nn.Module, params: dict[str, nn.Parameter], train_mode: bool):
    """``params`` trainable and every other parameter of ``model`` frozen, the model in ``train_mode``;
    both as they were afterwards."""
    flags = {id(p): p.requires_grad for p in model.parameters()}
    was_training = model.training
    chosen = {id(p) for p in params.values()}
    try:
        for p in model.parameters():
            p.requires_grad_(id(p) in chosen)
        model.train(train_mode)
        yield
    finally:
        for p in model.parameters():
            p.requires_grad_(flags.get(id(p), p.requires_grad))
        model.train(was_training)


def check_gradients(model: nn.Module, params: dict[str, nn.Parameter], extra: list[torch.Tensor]) -> None:
    """An error when anything but ``params`` got a gradient (``extra``: tensors outside the model, e.g. the
    teachers, that must never get one)."""
    chosen = {id(p) for p in params.values()}
    leaked = [n for n, p in model.named_parameters() if p.grad is not None and id(p) not in chosen]
    leaked += ["a teacher parameter" for p in extra if p.grad is not None]
    if leaked:
        raise RuntimeError(f"{leaked[0]} received a gradient; only the stage's own parameters may train")


def run_stage(stage: Stage, model: nn.Module, batches: Any, steps: int, lr: float, out: str | os.PathLike | None,
              log_every: int = 10, save_every: int = 100, progress: bool = True, grad_clip: float = 1.0,
              frozen_extra: list[torch.Tensor] | None = None) -> dict[str, float]:
    """Train ``stage.params`` for ``steps`` steps (resuming from ``out/state``); returns the final losses
    (the means of the last logged window)."""
    from tqdm.auto import tqdm

    _check_counts(steps=steps, log_every=log_every, save_every=save_every)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not stage.params:
        raise ValueError(f"{stage.name}: nothing to train (no parameters of the converted mixers)")
    optimizer = torch.optim.AdamW(list(stage.params.values()), lr=lr, weight_decay=0.0)
    root = Path(out) / STATE if out is not None else None
    start, window, last = 0, {"n": 0, "sums": {}}, {}
    if root is not None:
        start, window, last = _resume(stage, optimizer, root, steps)
        _trim_log(Path(out) / f"{stage.name}.jsonl", start, log_every)
    if start >= steps:
        return last
    with only_trainable(model, stage.params, stage.train_mode):
        model.zero_grad(set_to_none=True)  # gradients left by earlier training are not this stage's
        bar = tqdm(batch_stream(batches, start, steps), total=steps, initial=start, desc=stage.name,
                   unit="step", disable=not progress, dynamic_ncols=True)
        for step, batch in enumerate(bar, start):
            loss, values = stage.loss(batch)
            if not torch.isfinite(loss):
                raise ValueError(f"{stage.name}: the loss is not finite at step {step} (lr {lr:g} too high?); "
                                 "the last saved state is intact")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if step == start:
                check_gradients(model, stage.params, frozen_extra or [])
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(list(stage.params.values()), grad_clip)
            optimizer.step()
            if step == 0 and out is not None:
                _append(Path(out) / f"{stage.name}.jsonl", {"step": 0, "losses": values})
            window["n"] += 1
            for key, value in values.items():
                window["sums"][key] = window["sums"].get(key, 0.0) + value
            done = step + 1
            if done % log_every == 0 or done == steps:
                last = {k: v / window["n"] for k, v in window["sums"].items()}
                if done % log_every == 0:  # an end off the grid keeps its window: a resumed run completes it
                    window = {"n": 0, "sums": {}}
                bar.set_postfix(loss=f"{sum(last.values()) / max(len(last), 1):.4g}")
                if out is not None:
                    _append(Path(out) / f"{stage.name}.jsonl", {"step": done, "losses": last})
            if root is not None and (done % save_every == 0 or done == steps):
                state = {"stage": stage.name, "settings": stage.settings, "window": window, "last": last}
                save_checkpoint(root, done, _Tensors(stage.params), optimizer, state)
        bar.close()
        optimizer.zero_grad(set_to_none=True)
    return last


def _resume(stage: Stage, optimizer: torch.optim.Optimizer, root: Path,
            steps: int) -> tuple[int, dict[str, Any], dict[str, float]]:
    """Restore the stage from ``root`` when it holds a state; ``(start step, window, last losses)``."""
    if latest_checkpoint(root) is None:
        return 0, {"n": 0, "sums": {}}, {}
    ckpt = load_checkpoint(root)
    state = ckpt.state
    if state.get("stage") != stage.name:
        raise ValueError(f"{root} holds the state of stage {state.get('stage')!r}, not {stage.name!r}; "
                         "give each stage its own out")
    saved = state.get("settings", {})
    for key in sorted(set(saved) | set(stage.settings)):
        if saved.get(key) != stage.settings.get(key):
            raise ValueError(f"{root} was written with {key}={saved.get(key)!r}, this run has "
                             f"{key}={stage.settings.get(key)!r}; use another out or the same settings")
    if ckpt.step > steps:
        raise ValueError(f"{root} is at step {ckpt.step}, past steps={steps}; ask for at least {ckpt.step} steps")
    tensors = load_file(str(ckpt.path / TRAINABLE))
    if set(tensors) != set(stage.params):
        odd = sorted(set(tensors) ^ set(stage.params))[0]
        raise ValueError(f"{root} does not match this model's trainable parameters (e.g. {odd}); convert the "
                         "model the same way as the run that wrote it, or use another out")
    with torch.no_grad():
        for name, p in stage.params.items():
            if tensors[name].shape != p.shape:
                raise ValueError(f"{root}: {name} has shape {list(tensors[name].shape)}, the model's is {list(p.shape)}")
            p.copy_(tensors[name])
    optimizer.load_state_dict(unflatten_optimizer_state(ckpt.optimizer_tensors, state["optimizer"]))
    restore_rng_state(ckpt.rng_tensors, state["rng"])
    return ckpt.step, state["window"], state["last"]


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def _trim_log(path: Path, step: int, log_every: int) -> None:
    """Keep the log lines before ``step``, and its own if on the ``log_every`` grid (an earlier run's end
    off the grid was a partial window, which the resumed run completes); atomic rewrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()] if step > 0 else []
    kept = [line for line in lines if json.loads(line)["step"] < step
            or json.loads(line)["step"] == step and step % log_every == 0]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a stage's JSONL log (``[]`` when there is none)."""
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _check_counts(**values: Any) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "steps" else 1):
            raise ValueError(f"{name} must be an integer >= {0 if name == 'steps' else 1}, got {value!r}")
