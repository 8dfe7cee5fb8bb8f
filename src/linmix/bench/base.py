"""What every benchmark config shares: model width, memory probes on/off, device, seed, threads, presets.

Each bench subclasses :class:`BenchConfig` with its own fields and a ``QUICK`` dict (the ``--quick``
preset's values); the runner then treats every config alike (``validate``, ``describe``).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import ClassVar


@dataclass
class BenchConfig:
    """The fields common to every bench (recorded in every output)."""

    d_model: int = 256
    memory: bool = True
    device: str = "auto"
    seed: int = 0
    threads: int | None = None
    quick: bool = False

    #: the ``--quick`` preset: field values that make a run finish in a couple of minutes
    QUICK: ClassVar[dict] = {}

    @classmethod
    def quick_preset(cls, **overrides):
        """The quick preset, with every override that is not None on top."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(**(copy.deepcopy(cls.QUICK) | {"quick": True} | given))

    def validate(self) -> None:
        """``ValueError`` for a setting no run could use (benches add their own checks)."""
        if self.d_model <= 0:
            raise ValueError(f"d_model must be positive, got {self.d_model}")
        if self.threads is not None and self.threads <= 0:
            raise ValueError(f"threads must be positive, got {self.threads}")

    def describe(self) -> dict:
        """The config as recorded in the outputs (benches add resolved values: lengths, models)."""
        return asdict(self)


@dataclass
class LMBenchConfig(BenchConfig):
    """The fields of the benches that build whole language models (``decode``, ``train``).

    ``models`` picks entries of the bench's ``MODELS`` table by name, or adds ``name=layers`` entries whose
    layer spec goes to the model unchanged (inline options included).
    """

    models: str | None = None
    n_heads: int = 4
    vocab_size: int = 256

    #: the bench's model table: name -> layer spec
    MODELS: ClassVar[dict[str, str]] = {}

    def model_specs(self) -> dict[str, str]:
        """Model name -> layer spec of this run (``ValueError`` for an unknown name)."""
        from linmix.bench.registry import parse_models

        return parse_models(self.models, self.MODELS)

    def validate(self) -> None:
        """Also checks the vocabulary and that every model name is known."""
        super().validate()
        if self.vocab_size <= 1:
            raise ValueError(f"the vocabulary needs two tokens or more, got {self.vocab_size}")
        self.model_specs()

    def describe(self) -> dict:
        """Records the models as ``name -> layer spec``, so a result says exactly what was built."""
        return super().describe() | {"models": self.model_specs()}
