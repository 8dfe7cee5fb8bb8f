"""The figures of ``linmix analyze``: each a PNG with a JSON of the numbers drawn in it beside it (same stem).

Every function takes plain lists keyed by model label (what :mod:`linmix.analyze.report` computes), draws
one figure and returns the PNG's path; the JSON holds exactly the data passed in, so a figure can be redrawn
or compared without loading a model again.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig: Any, path: Path, data: Any) -> Path:
    """Write ``fig`` to ``path`` (PNG) and ``data`` to the JSON of the same stem; closes the figure."""
    fig.savefig(path, dpi=120)
    plt.close(fig)
    path.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    return path


def _grid(panels: int, width: float = 4.6, height: float = 4.0, cols: int = 3) -> tuple[Any, list[Any]]:
    cols = max(1, min(cols, panels))
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             layout="constrained")
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def show_token(text: str) -> str:
    """A token's text as it can be printed on a plot: control characters escaped, quoted."""
    return repr(text)


def plot_trajectories(models: dict[str, dict[str, Any]], path: Path) -> Path:
    """One panel per model: the shared 2-D PCA of its layers, a faint cloud of sampled tokens coloured by
    layer, and the highlighted tokens' paths from the embedding (square) to the last layer (star), one
    arrow per layer.

    Each model's entry: ``layer_names``, ``explained`` (2 fractions), ``cloud`` (``[L][M][2]``),
    ``tokens`` (a list of ``{"index", "text", "path": [L][2]}``).
    """
    fig, axes = _grid(len(models))
    cmap = plt.get_cmap("viridis")
    colors = plt.get_cmap("tab10").colors
    for ax, (label, entry) in zip(axes, models.items()):
        layers = len(entry["layer_names"])
        for depth, cloud in enumerate(entry["cloud"]):
            if cloud:
                xs, ys = zip(*cloud)
                ax.scatter(xs, ys, s=4, alpha=0.15, color=cmap(depth / max(layers - 1, 1)), linewidths=0)
        for k, token in enumerate(entry["tokens"]):
            color = colors[k % len(colors)]
            points = token["path"]
            for (x0, y0), (x1, y1) in zip(points, points[1:]):
                ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                            arrowprops={"arrowstyle": "->", "color": color, "lw": 1.3})
            ax.scatter(*points[0], marker="s", s=30, color=color, label=show_token(token["text"]), zorder=3)
            ax.scatter(*points[-1], marker="*", s=90, color=color, zorder=3)
        ev = entry["explained"]
        ax.set_xlabel(f"PC1 ({100 * ev[0]:.0f}% of variance)")
        ax.set_ylabel(f"PC2 ({100 * ev[1]:.0f}% of variance)" if len(ev) > 1 else "PC2")
        ax.set_title(f"{label}: embedding -> layer {layers - 1}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="token (square: embedding)", title_fontsize=7, loc="best")
    fig.suptitle("Token trajectories across layers (PCA shared by a model's layers)", fontsize=11)
    return save_figure(fig, path, models)


def plot_cosine_histograms(models: dict[str, list[dict[str, Any]]], layer_names: dict[str, list[str]],
                           path: Path) -> Path:
    """One panel per layer index (0 = embedding output), each model's pairwise-cosine density overlaid;
    a model with fewer layers is absent from the deeper panels. Entries: :func:`cosine_histogram` dicts."""
    depth = max(len(h) for h in models.values())
    fig, axes = _grid(depth, width=4.0, height=3.0, cols=4)
    for index, ax in enumerate(axes):
        for label, hists in models.items():
            if index >= len(hists):
                continue
            h = hists[index]
            ax.stairs(h["counts"], h["edges"], label=f"{label} ({layer_names[label][index]}, "
                      f"mean {h['mean']:.2f})", fill=False, lw=1.4)
        ax.axvline(0.0, color="grey", lw=0.6, ls=":")
        ax.set_title("embedding output" if index == 0 else f"layer {index}", fontsize=10)
        ax.set_xlabel("cosine similarity of token pairs")
        ax.set_ylabel("density")
        ax.set_xlim(-1, 1)
        ax.legend(fontsize=6)
    fig.suptitle("Pairwise cosine similarity of token representations", fontsize=11)
    return save_figure(fig, path, {"layer_names": layer_names, "histograms": models})


def plot_participation(models: dict[str, list[float]], layer_names: dict[str, list[str]], path: Path) -> Path:
    """Effective dimensionality (participation ratio) against layer index, one line per model."""
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for label, values in models.items():
        ax.plot(range(len(values)), values, marker="o", markersize=4, label=label)
    depth = max(len(v) for v in models.values())
    ax.set_xticks(range(depth), ["emb", *(str(i) for i in range(1, depth))])
    ax.set_xlabel("layer (emb = embedding output)")
    ax.set_ylabel("participation ratio")
    ax.set_title("Effective dimensionality of token representations")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path, {"layer_names": layer_names, "participation_ratio": models})


def plot_cka(models: dict[str, list[list[float]]], layer_names: dict[str, list[str]], path: Path) -> Path:
    """One heat map per model: linear CKA between every pair of its layers, on a shared 0..1 scale."""
    fig, axes = _grid(len(models), width=4.4, height=4.0)
    image = None
    for ax, (label, matrix) in zip(axes, models.items()):
        image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="magma", origin="lower")
        ticks = range(len(matrix))
        names = ["emb", *(str(i) for i in range(1, len(matrix)))]
        ax.set_xticks(ticks, names, fontsize=7)
        ax.set_yticks(ticks, names, fontsize=7)
        if len(matrix) <= 12:
            for a in ticks:
                for b in ticks:
                    ax.text(b, a, f"{matrix[a][b]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if matrix[a][b] < 0.6 else "black")
        ax.set_xlabel("layer")
        ax.set_ylabel("layer")
        ax.set_title(label, fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="linear CKA")
    fig.suptitle("Layer-to-layer linear CKA", fontsize=11)
    return save_figure(fig, path, {"layer_names": layer_names, "cka": models})
