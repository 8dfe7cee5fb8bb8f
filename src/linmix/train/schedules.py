"""Learning-rate schedules as pure functions of the step: linear warmup, then cosine decay or constant.

A schedule holds no mutable state, so the LR at any step is known without replaying the run; a checkpoint
stores the schedule's parameters only to check that a resumed run uses the same ones.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class LRSchedule:
    """``lr(step)`` for steps ``0 .. total_steps - 1``.

    Warmup: ``base_lr * (step + 1) / warmup`` for ``step < warmup`` (never exactly 0). Then ``"cosine"``
    decays from ``base_lr`` to ``base_lr * min_lr_ratio`` over the remaining steps (reaching the floor at
    ``total_steps - 1``), and ``"constant"`` stays at ``base_lr``.
    """

    kind: str
    base_lr: float
    warmup: int
    total_steps: int
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.kind!r}")
        if not self.base_lr > 0:
            raise ValueError(f"base_lr must be positive, got {self.base_lr}")
        if self.warmup < 0 or self.total_steps < 1:
            raise ValueError(f"need warmup >= 0 and total_steps >= 1, got {self.warmup}, {self.total_steps}")

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.base_lr * (step + 1) / self.warmup
        if self.kind == "constant":
            return self.base_lr
        span = self.total_steps - 1 - self.warmup
        progress = 1.0 if span <= 0 else min(1.0, (step - self.warmup) / span)
        floor = self.base_lr * self.min_lr_ratio
        return floor + 0.5 * (self.base_lr - floor) * (1.0 + math.cos(math.pi * progress))

    def state_dict(self) -> dict[str, Any]:
        """The schedule's parameters (JSON)."""
        return asdict(self)


def warmup_cosine(step: int, base_lr: float, warmup: int, total_steps: int, min_lr_ratio: float = 0.1) -> float:
    """Functional form of ``LRSchedule("cosine", ...)(step)``."""
    return LRSchedule("cosine", base_lr, warmup, total_steps, min_lr_ratio)(step)


def warmup_constant(step: int, base_lr: float, warmup: int) -> float:
    """Functional form of ``LRSchedule("constant", ...)(step)``."""
    return LRSchedule("constant", base_lr, warmup, max(1, warmup + 1))(step)
