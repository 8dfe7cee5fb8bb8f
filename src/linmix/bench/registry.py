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
:data:`TRAIN_MODELS`. User-given mixer names and layer specs may carry inline options
(``local_attention(window=64)``, ``spectral(kernel=implicit)*4``): layer specs go to the models unchanged,
and a single-mixer case is split into name and options by :func:`mixer_spec`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from linmix.mixers.registry import MIXERS, build_mixer, check_mixer_name, mixer_options

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
    "spectral": "spectral*4",
    "spectral_implicit": "spectral(kernel=implicit)*4",
    "aggregation": "aggregation*4",
    "linear_attention": "linear_attention*4",
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
    def mixer(self) -> str:
        """The registered mixer name without inline options (``floor:*`` for floors)."""
        return self.name if self.kind == "floor" else mixer_spec(self.name)[0]

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
        return self.mixer in QUADRATIC

    def build(self, d_model: int, T: int) -> nn.Module:
        """The module to time on ``[B, T, d_model]`` input (``max_len = T``), in float32 on the CPU."""
        if self.name == FLOOR_CLONE:
            return CloneFloor()
        if self.name == FLOOR_LINEAR:
            return nn.Linear(d_model, d_model)
        name, options = mixer_spec(self.name)
        return build_mixer(name, d_model=d_model, max_len=T, causal=self.causal, **options)

    def to_dict(self) -> dict:
        """JSON-able form, for the fresh-process memory job."""
        return {"name": self.name, "causal": self.causal, "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict) -> "OpCase":
        """Inverse of :meth:`to_dict`."""
        return cls(d["name"], bool(d["causal"]), d["kind"])


def projection_count(module: nn.Module, d_model: int) -> float:
    """How many ``Linear(D, D)`` the module's ``nn.Linear`` weights amount to (attention: 3 + 1 = 4)."""
    weights = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))
    return weights / float(d_model * d_model)


def _layer_spec_parser():
    """``linmix.models.spec.parse_layer_specs`` where it exists (inline options), else None."""
    from linmix.models import spec

    return getattr(spec, "parse_layer_specs", None)


def mixer_spec(text: str) -> tuple[str, dict]:
    """``"local_attention(window=64)"`` -> ``("local_attention", {"window": 64})``; a bare name -> no options.

    Uses the models' layer-spec parser when it knows inline options; otherwise the text must be a bare
    registered name. ``ValueError`` for an unknown name or for more than one mixer.
    """
    parse = _layer_spec_parser()
    if parse is None:
        check_mixer_name(text.strip())
        return text.strip(), {}
    specs = list(parse(text))
    if len(specs) != 1:
        raise ValueError(f"{text!r} is not one mixer; write name or name(option=value,...)")
    name, options = specs[0].name, dict(specs[0].options)
    accepted = set(mixer_options(name))  # checks the name too
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"mixer {name!r} does not take option(s) {unknown}; it accepts: "
                         f"{', '.join(sorted(accepted)) or 'none'}")
    return name, options


def layer_names(layers: str) -> list[str]:
    """The mixer name of every layer of a layer spec (inline options allowed where the parser knows them)."""
    parse = _layer_spec_parser()
    if parse is None:
        from linmix.models.spec import parse_layers

        return parse_layers(layers)
    return [s.name for s in parse(layers) for _ in range(int(getattr(s, "repeat", 1) or 1))]


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of mixer specs, keeping commas inside parentheses: ``a(x=1,y=2),b``."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += ch
    items.append(current.strip())
    return [i for i in items if i]


def parse_lengths(spec: str | list[int]) -> list[int]:
    """``"256:16384"`` (doubling), ``"256,1024,4096"`` or a list -> sorted unique positive lengths."""
    if isinstance(spec, str) and ":" in spec:
        try:
            lo, hi = (int(s) for s in spec.split(":", 1))
        except ValueError:
            raise ValueError(f"lengths range must look like 256:16384, got {spec!r}") from None
        if lo <= 0 or hi < lo:
            raise ValueError(f"lengths range needs 0 < start <= end, got {spec!r}")
        return [lo * 2**i for i in range(hi.bit_length()) if lo * 2**i <= hi]
    try:
        values = [int(s) for s in (spec.split(",") if isinstance(spec, str) else spec) if str(s).strip()]
    except ValueError:
        raise ValueError(f"lengths must be integers like 256,512 or a range 256:16384, got {spec!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"lengths must be positive integers, got {spec!r}")
    return sorted(set(values))


def supports_causal(name: str) -> bool:
    """Whether the mixer (a name, or ``name(options)``) has a causal form (fnet does not)."""
    mixer, _ = mixer_spec(name)
    return bool(MIXERS[mixer].supports_causal)


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
    names = list(MIXERS) if not mixers else list(dict.fromkeys(m.strip() for m in mixers))
    for name in names:
        if name not in FLOORS:
            mixer_spec(name)  # ValueError for an unknown name or a bad option list
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
