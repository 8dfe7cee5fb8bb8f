"""Curves of every candidate on one figure: validation metric per step, training loss per second."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(curves: dict[str, list[tuple[float, float]]], path: Path, metric: str, title: str,
                xlabel: str = "training step", markers: bool = True) -> Path | None:
    """One line per run label (``candidate`` or ``candidate seed s``) of ``metric`` against ``xlabel``."""
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in curves.items():
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o" if markers else None, markersize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
