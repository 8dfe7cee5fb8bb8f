"""How a comparison names its candidates: ``LAYERS[+FUSION][@ARCH]`` or ``ridge`` (:class:`Candidate`)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from linmix.config import FUSIONS
from linmix.models.spec import parse_layers


@dataclass
class Candidate:
    """One row of the table: a layer spec, ``arch`` (``block`` or the papers' ``bare``) and, for multimodal
    regressors, ``fusion`` (``add``, ``concat`` or ``text``: see :class:`~linmix.MultimodalRegressor`;
    ``None`` keeps the base config's); or the multimodal ``ridge`` reference (``layers == "ridge"``)."""

    layers: str
    arch: str = "block"
    fusion: str | None = None

    @property
    def is_ridge(self) -> bool:
        return self.layers == "ridge"

    @property
    def name(self) -> str:
        fusion = f"+{self.fusion}" if self.fusion else ""
        return self.layers + fusion + ("" if self.arch == "block" else f"@{self.arch}")

    @classmethod
    def parse(cls, text: str) -> Candidate:
        """``LAYERS[+FUSION][@ARCH]`` or ``ridge``: ``"summation*3,attention"``, ``"summation@bare"``,
        ``"summation+add"``, ``"attention+concat@bare"``. A ``+`` followed by a plain word is the fusion
        (so an option such as ``1e+3)`` stays part of the layers)."""
        if text.strip() == "ridge":
            return cls("ridge")
        layers, _, arch = text.partition("@")
        arch = arch.strip() or "block"
        if arch not in ("block", "bare"):
            raise ValueError(f"candidate {text!r}: the part after '@' must be 'block' or 'bare'")
        head, plus, tail = layers.rpartition("+")
        fusion = tail.strip() if plus and re.fullmatch(r"\s*[A-Za-z_]+\s*", tail) else None
        if fusion is not None:
            if fusion not in FUSIONS:
                raise ValueError(f"candidate {text!r}: the part after '+' must be one of {', '.join(FUSIONS)}")
            layers = head
        parse_layers(layers)
        return cls(layers.strip(), arch, fusion)
