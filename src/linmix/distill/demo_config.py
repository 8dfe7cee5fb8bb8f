"""The settings of ``linmix distill-demo``: a teacher to train, the mixers to convert it to, the two
distillation stages, all in one TOML (or JSON) file.

A file looks like::

    candidates = ["summation", "linear_attention", "summation keep=-1"]
    transfer_steps = 300
    recovery_steps = 300
    out = "runs/convert-nanogpt-64"

    [teacher]            # a whole `linmix train lm` config: [teacher.model], .data, .optim, .run
    task = "lm"
    [teacher.model]
    layers = "attention*4"

A candidate is ``MIXER`` (every attention layer converted) or ``MIXER keep=K``, with ``K`` as
``linmix distill --keep`` reads it (``-1``, ``0,-1``, a ratio ``0.25``, ``auto``): those attention layers
stay softmax attention. The teacher's ``run.final_eval_batches`` is the one validation setting of the
demo (unset: the whole validation split): the teacher's, every distillation stage's and every
from-scratch run's validation loss are computed on the same batches, so the columns of the table compare.

Everything is checked before anything trains; a bad value is a ``ValueError`` naming it.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linmix.checks import check_int_at_least, check_range, is_finite
from linmix.config import TrainConfig
from linmix.config_io import read_config_file, write_config_file
from linmix.convert.keep import resolve_keep
from linmix.distill.cli import parse_keep
from linmix.distill.transfer import LOSSES
from linmix.mixers.registry import check_mixer_name
from linmix.models.spec import parse_layer_specs

#: the teacher mixers linmix.convert replaces in a linmix model
ATTENTION = ("attention", "local_attention")


@dataclass(frozen=True)
class DemoCandidate:
    """One conversion: ``text`` as written in the config, the mixer, what to keep (as ``convert`` takes it)."""

    text: str
    mixer: str
    keep: Any = None

    @classmethod
    def parse(cls, text: Any) -> DemoCandidate:
        """``"summation"`` or ``"summation keep=-1"`` (``ValueError`` for anything else)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"a candidate is a string like 'summation' or 'summation keep=-1', got {text!r}")
        mixer, *rest = text.split()
        keep = None
        for part in rest:
            name, eq, value = part.partition("=")
            if name != "keep" or not eq:
                raise ValueError(f"candidate {text!r}: unknown part {part!r}; write MIXER or MIXER keep=K")
            keep = parse_keep(value)
        check_mixer_name(mixer)
        return cls(" ".join(text.split()), mixer, keep)

    @property
    def keep_text(self) -> str:
        """``keep`` as written after ``keep=`` (``""`` for none)."""
        if self.keep is None:
            return ""
        return ",".join(map(str, self.keep)) if isinstance(self.keep, list) else str(self.keep)

    @property
    def slug(self) -> str:
        """The candidate's folder name: ``summation``, ``summation-keep_-1``."""
        keep = f"-keep_{self.keep_text}" if self.keep is not None else ""
        return re.sub(r"[^A-Za-z0-9_.,-]+", "_", self.mixer + keep)


@dataclass
class DemoConfig:
    """Train ``teacher``, convert it to each candidate, distil (transfer, recovery), and train each
    converted architecture from scratch for the teacher's steps + ``transfer_steps`` + ``recovery_steps``.

    ``transfer_lr``, ``recovery_lr``, ``loss``, ``kl_weight``, ``lora_rank`` and ``seed`` (the new mixers'
    initialisation) are those of :func:`linmix.distill.pipeline.distill_run`; ``out`` is the default
    output folder.
    """

    teacher: TrainConfig = field(default_factory=TrainConfig)
    candidates: list[str] = field(default_factory=list)
    transfer_steps: int = 300
    recovery_steps: int = 300
    transfer_lr: float = 1e-3
    recovery_lr: float = 1e-4
    loss: str = "mse"
    kl_weight: float = 0.0
    lora_rank: int = 0
    seed: int = 0
    out: str | None = None

    # ------------------------------------------------------------------ in and out
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the distill-demo config") -> DemoConfig:
        """Inverse of :meth:`to_dict`; an unknown key is a ``ValueError`` naming it and ``source``."""
        if not isinstance(data, dict):
            raise ValueError(f"{source} must be a table, got {type(data).__name__}")
        data = dict(data)
        teacher = TrainConfig.from_dict(data.pop("teacher", {}) or {}, f"{source} [teacher]")
        known = [f.name for f in dataclasses.fields(cls) if f.name != "teacher"]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} in {source}; known: teacher, {', '.join(known)}")
        return cls(teacher=teacher, **data)

    # ------------------------------------------------------------------ derived
    def parsed_candidates(self) -> list[DemoCandidate]:
        if not isinstance(self.candidates, list) or not self.candidates:
            raise ValueError("candidates must be a non-empty list like ['summation', 'summation keep=-1']")
        parsed = [DemoCandidate.parse(text) for text in self.candidates]
        slugs = [c.slug for c in parsed]
        twice = sorted({s for s in slugs if slugs.count(s) > 1})
        if twice:
            raise ValueError(f"candidate {twice[0]!r} is listed twice")
        return parsed

    def teacher_config(self) -> TrainConfig:
        """The teacher's training config, resolved and checked (``ValueError`` otherwise)."""
        if self.teacher.task != "lm":
            raise ValueError(f"[teacher] task must be 'lm' (a language model), got {self.teacher.task!r}")
        if self.teacher.run.epochs is not None:
            raise ValueError("[teacher.run] give steps, not epochs: the from-scratch runs add steps to them")
        return self.teacher.resolved()

    @property
    def stage_steps(self) -> int:
        return self.transfer_steps + self.recovery_steps

    def validate(self) -> tuple[TrainConfig, list[DemoCandidate]]:
        """``(resolved teacher config, candidates)`` after checking every value (``ValueError`` otherwise)."""
        teacher = self.teacher_config()
        candidates = self.parsed_candidates()
        for name in ("transfer_steps", "recovery_steps", "lora_rank", "seed"):
            check_int_at_least(name, getattr(self, name), 0)
        for name in ("transfer_lr", "recovery_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (is_finite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        check_range("kl_weight", self.kl_weight, 0, 1)
        if self.out is not None and not isinstance(self.out, str):
            raise ValueError(f"out must be a folder name, got {self.out!r}")
        names = [spec.name for spec in parse_layer_specs(teacher.model.layers)]
        sites = [f"layer {i} ({name})" for i, name in enumerate(names) if name in ATTENTION]
        if not sites:
            raise ValueError(f"[teacher.model] layers {teacher.model.layers!r} hold no attention layer to convert")
        for cand in candidates:
            if cand.keep == "auto":
                continue
            try:
                kept, _ = resolve_keep(cand.keep, len(sites), sites)
            except ValueError as err:
                raise ValueError(f"candidate {cand.text!r}: {err}") from None
            if len(kept) == len(sites):
                raise ValueError(f"candidate {cand.text!r} keeps every attention layer; nothing to convert")
        return teacher, candidates


def load_demo_config(path: str | os.PathLike) -> DemoConfig:
    """The :class:`DemoConfig` in a ``.toml``/``.json`` file (``FileNotFoundError``/``ValueError`` say what
    is wrong)."""
    return DemoConfig.from_dict(read_config_file(path), str(path))


def write_demo_config(config: DemoConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` as TOML or JSON (by suffix), atomically; :func:`load_demo_config` reads it back."""
    return write_config_file(config.to_dict(), path)
