"""What :func:`linmix.convert` did to a model, as data (for code) and as a table (for people)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Replacement:
    """One attention module swapped for a linmix mixer.

    Attributes:
        path: dotted module path in the model (``transformer.h.0.attn``).
        old: class name of the module that was replaced.
        new: the mixer that replaces it, as a layer spec (``linear_attention(n_heads=4)``).
        initialised: which of the mixer's weights were copied from the old ones and from where
            (``"qkv, out <- c_attn, c_proj"``); empty when the mixer has no such pieces (fresh init).
    """

    path: str
    old: str
    new: str
    initialised: str = ""


@dataclass
class ConversionReport:
    """The outcome of :func:`linmix.convert`: what was replaced, what was kept and why, the parameter
    counts before and after, and (for ``keep="auto"``) each layer's calibration score.

    ``str(report)`` is a readable table. ``scores`` maps a module path to the relative MSE of the plain
    swap on the calibration input (``mean((new - old)^2) / mean(old^2)``): how far the freshly converted
    layer is from the attention it replaces before any training.
    """

    mixer: str
    replaced: list[Replacement] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: every attention module's path, in model order, with its class name
    modules: dict[str, str] = field(default_factory=dict)

    @property
    def replaced_paths(self) -> list[str]:
        """The module paths that now hold a linmix mixer, in model order."""
        return [r.path for r in self.replaced]

    @property
    def initialised(self) -> dict[str, str]:
        """``{path: what was copied}`` for every replaced module initialised from the old weights."""
        return {r.path: r.initialised for r in self.replaced if r.initialised}

    def __str__(self) -> str:
        rows = [("path", "was", "now", "initialised from old weights", "score")]
        replaced = {r.path: r for r in self.replaced}
        for path in [*self.modules, *(p for p in [*replaced, *self.kept] if p not in self.modules)]:
            if path in replaced:
                r = replaced[path]
                rows.append((path, r.old, r.new, r.initialised or "no (fresh init)", self._score(path)))
            elif path in self.kept:
                rows.append((path, self.modules.get(path, ""), f"kept: {self.kept[path]}", "", self._score(path)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [f"linmix.convert -> {self.mixer}: {len(self.replaced)} replaced, {len(self.kept)} kept"]
        for i, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        change = self.params_after - self.params_before
        lines.append(f"parameters: {self.params_before:,} -> {self.params_after:,} ({change:+,})")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    def _score(self, path: str) -> str:
        return f"{self.scores[path]:.4g}" if path in self.scores else ""
