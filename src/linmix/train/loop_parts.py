"""The pieces of the training loop that stand on their own (the :class:`~linmix.train.loop.Trainer` uses them).

* :class:`EarlyStopping` — the best value of the monitored metric and the patience count.
* :class:`TrainingDiverged` — raised when the loss, the gradient or the weights become NaN/inf.
* :func:`autocast_dtype` — what ``--amp`` means on a device (checked before anything is loaded).
* :func:`param_groups` — AdamW groups: weight decay on matrices only.
* :class:`ThroughputWindow` — mean loss, tokens/s and seconds per step between two log lines.
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch


class TrainingDiverged(RuntimeError):
    """The loss, the gradient or the weights became NaN/inf; the message names the step and the last good checkpoint."""


class EarlyStopping:
    """Tracks the best value of the monitored metric; ``should_stop`` after ``patience`` bad evaluations."""

    def __init__(self, monitor: str, mode: str, patience: int) -> None:
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_metrics: dict[str, float] = {}
        self.bad = 0

    def update(self, metrics: dict[str, float], step: int) -> bool:
        """Record an evaluation; returns True when it is a new best."""
        value = metrics[self.monitor]
        better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if better and math.isfinite(value):
            self.best, self.best_step, self.best_metrics, self.bad = value, step, dict(metrics), 0
            return True
        self.bad += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "best_metrics": self.best_metrics, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step = state["best"], state["best_step"]
        self.best_metrics, self.bad = dict(state["best_metrics"]), int(state["bad"])


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--amp`` on ``device`` (``None`` = off); ``ValueError`` when unsupported."""
    if amp == "none":
        return None
    if amp == "bf16":
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"--amp bf16 needs a CPU or CUDA device, not {device.type}")
        return torch.bfloat16
    if device.type != "cuda":
        raise ValueError("--amp fp16 needs CUDA (it uses a GradScaler); use --amp bf16 on CPU")
    return torch.float16


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices (dim >= 2); leave biases, norms and 1-D scales undecayed."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


class ThroughputWindow:
    """Running mean loss and token rate between two log lines."""

    def __init__(self) -> None:
        self.loss, self.n, self.tokens, self.t0 = 0.0, 0, 0, time.perf_counter()

    def add(self, loss: float, tokens: int) -> None:
        self.loss, self.n, self.tokens = self.loss + loss, self.n + 1, self.tokens + tokens

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` (evaluation, checkpointing) out of the window's elapsed time."""
        self.t0 += seconds

    def flush(self, now: float) -> tuple[float, float, float]:
        """Mean loss, tokens/s and seconds per step since the last flush (evaluation and checkpoint time
        excluded, see :meth:`exclude`)."""
        elapsed = max(now - self.t0, 1e-9)
        mean, rate, step_s = self.loss / max(self.n, 1), self.tokens / elapsed, elapsed / max(self.n, 1)
        self.loss, self.n, self.tokens, self.t0 = 0.0, 0, 0, now
        return mean, rate, step_s
