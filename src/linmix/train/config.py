"""The one configuration object of a training run, with per-task defaults and validation.

:class:`TrainConfig` is plain data (JSON round trip via :meth:`TrainConfig.to_dict` /
:meth:`TrainConfig.from_dict`); ``run_dir/train_config.json`` holds it, and ``--resume`` reads it back.
Fields left ``None`` take the task's default in :meth:`TrainConfig.resolved` (e.g. the char tokenizer and
block 128 for ``lm``, the word tokenizer with K=10,000 and max_len 256 for ``classify``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

TASKS = ("lm", "classify", "multimodal")
SCHEDULES = ("cosine", "constant")
AMP_MODES = ("none", "bf16", "fp16")
CONTROLLERS = ("none", "qlearning")
DTYPES = ("float32", "float64")

#: per-task defaults for fields left ``None``
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "lm": dict(dataset="tinyshakespeare", layers="summation*3,attention", tokenizer="char", max_len=128,
               batch_size=32, steps=1500, lr=3e-3, warmup=100, eval_every=250, eval_batches=20,
               patience=0, d_model=128, n_heads=4),
    "classify": dict(dataset="ag_news", layers="summation*2", tokenizer="word", vocab_size=10_000,
                     max_len=256, batch_size=32, epochs=2, lr=1e-3, warmup=100, eval_every=200,
                     eval_batches=40, patience=5, d_model=128, n_heads=4),
    "multimodal": dict(dataset="clothing_reviews", layers="summation*2", tokenizer="word", vocab_size=10_000,
                       max_len=128, batch_size=32, epochs=3, lr=1e-3, warmup=100, eval_every=200,
                       eval_batches=40, patience=5, d_model=128, n_heads=4),
}

#: fields that may differ from the saved config on ``--resume`` (they do not change the result)
RESUME_MUTABLE = ("device", "data_dir", "progress", "out")


@dataclass
class TrainConfig:
    """Everything that defines a training run (model, data, optimisation, logging).

    ``steps`` and ``epochs`` are alternatives (``epochs`` is converted to steps once the data is
    loaded). ``max_len`` is the LM block size or the classifier's maximum sequence length.
    ``eval_batches`` bounds the periodic evaluation (a fixed, seeded subset of the validation split);
    the final evaluation covers the whole split unless ``final_eval_batches`` bounds it too (for huge
    validation splits, e.g. IMDB text as an LM corpus). ``beta1``/``beta2`` are AdamW's (nanoGPT's
    char-level Shakespeare config uses beta2 = 0.99). ``patience`` counts evaluations without
    improvement of the monitored metric before stopping early (0 = never). ``checkpoint_every`` defaults
    to ``eval_every``.
    """

    task: str = "lm"
    dataset: str | None = None
    layers: str | None = None
    out: str | None = None
    d_model: int | None = None
    n_heads: int | None = None
    max_len: int | None = None
    batch_size: int | None = None
    steps: int | None = None
    epochs: float | None = None
    lr: float | None = None
    min_lr_ratio: float = 0.1
    warmup: int | None = None
    schedule: str = "cosine"
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int | None = None
    eval_batches: int | None = None
    final_eval_batches: int | None = None
    checkpoint_every: int | None = None
    log_every: int = 10
    patience: int | None = None
    seed: int = 0
    tokenizer: str | None = None
    vocab_size: int | None = None
    positional: str = "learned"
    norm: str = "pre"
    dropout: float = 0.0
    ffn_mult: int = 4
    pooling: str = "mean"
    arch: str = "block"
    fusion: str = "add"
    target: str = "Rating"
    amp: str = "none"
    dtype: str = "float32"
    device: str = "auto"
    data_dir: str | None = None
    lr_controller: str = "none"
    controller_options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    def resolved(self) -> TrainConfig:
        """A copy with the task defaults filled in and every value checked (``ValueError`` otherwise)."""
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; use one of: {', '.join(TASKS)}")
        values = dataclasses.asdict(self)
        defaults = TASK_DEFAULTS[self.task]
        explicit_length = values["steps"] is not None or values["epochs"] is not None
        for key, value in defaults.items():
            if key in ("steps", "epochs") and explicit_length:
                continue
            if values.get(key) is None:
                values[key] = value
        cfg = TrainConfig(**values)
        if cfg.checkpoint_every is None:
            cfg.checkpoint_every = cfg.eval_every
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """``ValueError`` naming the first nonsensical value."""
        _positive(d_model=self.d_model, n_heads=self.n_heads, max_len=self.max_len, batch_size=self.batch_size,
                  eval_every=self.eval_every, checkpoint_every=self.checkpoint_every, log_every=self.log_every,
                  eval_batches=self.eval_batches, final_eval_batches=self.final_eval_batches,
                  ffn_mult=self.ffn_mult, vocab_size=self.vocab_size)
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give either --steps or --epochs, not both")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"--steps must be a positive integer, got {self.steps!r}")
        if self.epochs is not None and not (_finite(self.epochs) and self.epochs > 0):
            raise ValueError(f"--epochs must be a positive number, got {self.epochs!r}")
        if not (_finite(self.lr) and self.lr > 0):
            raise ValueError(f"--lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"--warmup must be a non-negative integer, got {self.warmup!r}")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ValueError(f"--patience must be a non-negative integer (0 = no early stopping), "
                             f"got {self.patience!r}")
        if not (_finite(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1):
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio!r}")
        if not (_finite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        for name, beta in (("--beta1", self.beta1), ("--beta2", self.beta2)):
            if not (_finite(beta) and 0 <= beta < 1):
                raise ValueError(f"{name} must lie in [0, 1), got {beta!r}")
        if not (_finite(self.grad_clip) and self.grad_clip >= 0):
            raise ValueError(f"--grad-clip must be >= 0 (0 = off), got {self.grad_clip!r}")
        if not (_finite(self.dropout) and 0 <= self.dropout < 1):
            raise ValueError(f"--dropout must lie in [0, 1), got {self.dropout!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"--seed must be a non-negative integer, got {self.seed!r}")
        _choice("--schedule", self.schedule, SCHEDULES)
        _choice("--arch", self.arch, ("block", "bare"))
        _choice("--amp", self.amp, AMP_MODES)
        _choice("--dtype", self.dtype, DTYPES)
        _choice("--lr-controller", self.lr_controller, CONTROLLERS)
        _choice("--tokenizer", self.tokenizer, ("char", "word", "bpe"))
        if self.amp != "none" and self.dtype != "float32":
            raise ValueError("--amp needs --dtype float32 (autocast lowers float32 operations)")
        from linmix.models.spec import parse_layers

        parse_layers(self.layers)  # unknown mixer names -> ValueError listing the registered ones

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training config field(s): {', '.join(unknown)}")
        return cls(**data)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive(**values: Any) -> None:
    for name, value in values.items():
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")


def _choice(flag: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")
