"""What the benchmarks measure: a declarative list of cases, kept apart from how they are timed.

``linmix bench ops`` measures every selected mixer (causal and bidirectional) beside three fixed cases of
the same shape ``[B, T, D]``:

* ``attention`` (the registered SDPA mixer, the baseline every ratio is taken against),
* ``floor:clone`` (``x.clone()``: what touching the activations once costs, memory bandwidth),
* ``floor:linear`` (one ``nn.Linear(D, D)``: the unavoidable projection).

Each mixer's *own floor* is the cost of its projections: ``n_proj`` = (weights of its ``nn.Linear``
sub-modules) / D^2 times the measured ``floor:linear`` (two for summation, four for attention), or the clone
floor for a mixer with no projection (fnet). A mixer's "multiple of its floor" is its time divided by that.

``linmix bench decode`` and ``linmix bench train`` take their model lists from :data:`DECODE_MODELS` and
:data:`TRAIN_MODELS`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from linmix.mixers.registry import MIXERS, build_mixer, check_mixer_name

BASELINE = "attention"
FLOOR_CLONE = "floor:clone"
FLOOR_LINEAR = "floor:linear"
FLOORS = (FLOOR_CLONE, FLOOR_LINEAR)

#: mixers whose time and memory are expected to grow quadratically (used to predict memory before a run)
QUADRATIC = frozenset({"attention"})

#: layer specs of the LMs ``linmix bench decode`` generates with (name -> layers)
DECODE_MODELS: dict[str, str] = {
    "summation": "summation*4",
    "hybrid": "summation*3,attention",
    "attention": "attention*4",
}

#: layer specs of the same-size LMs ``linmix bench train`` trains (name -> layers)
TRAIN_MODELS: dict[str, str] = {
    "attention": "attention*4",
    "summation": "summation*4",
    "hybrid": "summation*3,attention",
    "spectral": "spectral*4",
    "linear_attention": "linear_attention*4",
}


class CloneFloor(nn.Module):
    """``x.clone()``: one read and one write of the activations (the memory-bandwidth floor)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


@dataclass(frozen=True)
class OpCase:
    """One line of the ops benchmark: a registered mixer in one mode, or a floor.

    Attributes:
        name: registered mixer name, or ``floor:clone`` / ``floor:linear``.
        causal: the mode (floors are mode-free and carry ``True``).
        kind: ``"baseline"`` (attention), ``"mixer"`` or ``"floor"``.
    """

    name: str
    causal: bool
    kind: str

    @property
    def mode(self) -> str:
        """``causal``, ``bidir`` or ``-`` (floors)."""
        if self.kind == "floor":
            return "-"
        return "causal" if self.causal else "bidir"

    @property
    def label(self) -> str:
        """Unique, human-readable id: ``summation/causal``, ``floor:linear``."""
        return self.name if self.kind == "floor" else f"{self.name}/{self.mode}"

    @property
    def quadratic(self) -> bool:
        return self.name in QUADRATIC

    def build(self, d_model: int, T: int) -> nn.Module:
        """The module to time on ``[B, T, d_model]`` input (``max_len = T``), in float32 on the CPU."""
        if self.name == FLOOR_CLONE:
            return CloneFloor()
        if self.name == FLOOR_LINEAR:
            return nn.Linear(d_model, d_model)
        return build_mixer(self.name, d_model=d_model, max_len=T, causal=self.causal)

    def to_dict(self) -> dict:
        return {"name": self.name, "causal": self.causal, "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict) -> "OpCase":
        return cls(d["name"], bool(d["causal"]), d["kind"])


def projection_count(module: nn.Module, d_model: int) -> float:
    """How many ``Linear(D, D)`` the module's ``nn.Linear`` weights amount to (attention: 3 + 1 = 4)."""
    weights = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))
    return weights / float(d_model * d_model)


def supports_causal(name: str) -> bool:
    """Whether the registered mixer has a causal form (fnet does not)."""
    check_mixer_name(name)
    try:
        build_mixer(name, d_model=8, max_len=8, causal=True)
    except ValueError:
        return False
    return True


def parse_modes(modes: str | list[str] | tuple[str, ...]) -> tuple[bool, ...]:
    """``"causal,bidir"`` -> ``(True, False)``; ``ValueError`` for anything else."""
    items = modes.split(",") if isinstance(modes, str) else list(modes)
    out = []
    for m in (s.strip() for s in items if s.strip()):
        if m not in ("causal", "bidir"):
            raise ValueError(f"mode must be 'causal' or 'bidir', got {m!r}")
        out.append(m == "causal")
    if not out:
        raise ValueError("at least one mode (causal, bidir) is needed")
    return tuple(dict.fromkeys(out))


def select_cases(mixers: list[str] | None = None, modes: tuple[bool, ...] = (True, False)) -> list[OpCase]:
    """Floors, the attention baseline and the selected mixers (all registered ones by default).

    The baseline and floors are always included, whatever ``mixers`` says, so every ratio has its reference.
    """
    names = list(MIXERS) if not mixers else list(dict.fromkeys(mixers))
    for name in names:
        if name in FLOORS:
            continue
        check_mixer_name(name)
    cases = [OpCase(FLOOR_CLONE, True, "floor"), OpCase(FLOOR_LINEAR, True, "floor")]
    cases += [OpCase(BASELINE, causal, "baseline") for causal in modes]
    for name in names:
        if name == BASELINE or name in FLOORS:
            continue
        for causal in modes:
            if causal and not supports_causal(name):
                continue
            cases.append(OpCase(name, causal, "mixer"))
    return cases


def parse_models(spec: str | None, table: dict[str, str]) -> dict[str, str]:
    """``"summation,attention"`` -> the named entries of ``table``; ``name=layers`` adds a custom one."""
    if not spec:
        return dict(table)
    out: dict[str, str] = {}
    for item in (s.strip() for s in spec.split(";" if "=" in spec else ",") if s.strip()):
        if "=" in item:
            name, layers = item.split("=", 1)
            out[name.strip()] = layers.strip()
        elif item in table:
            out[item] = table[item]
        else:
            raise ValueError(f"unknown model {item!r}; known: {', '.join(table)} (or give name=layers)")
    return out
