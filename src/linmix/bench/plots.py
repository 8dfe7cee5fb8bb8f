"""Log-log plots of the benchmark results (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

from linmix.bench.registry import BASELINE  # noqa: E402


def _style(label: str, kind: str) -> dict:
    if kind == "floor":
        dash = "--" if label.endswith("linear") else "-."
        return {"color": "0.45", "linestyle": dash, "marker": "", "linewidth": 1.2}
    if label.startswith(f"{BASELINE}/"):
        return {"color": "black", "linewidth": 2.6, "marker": "o"}
    return {"linewidth": 1.6, "marker": "o", "markersize": 3.5}


def _guides(ax, lengths: list[int], anchor: float) -> None:
    """Dotted O(T) and O(T^2) lines through ``anchor`` at the shortest length."""
    t0 = lengths[0]
    for power, name in ((1, "O(T)"), (2, "O(T²)")):
        ys = [anchor * (t / t0) ** power for t in lengths]
        ax.plot(lengths, ys, linestyle=":", color="tab:gray", linewidth=1.0)
        ax.annotate(name, (lengths[-1], ys[-1]), textcoords="offset points", xytext=(-4, 4), fontsize=8,
                    color="tab:gray", ha="right", va="bottom")


def _panel(ax, rows: list[dict], key: str, mode: str, lengths: list[int], ylabel: str, title: str) -> None:
    labels = list(dict.fromkeys(r["case"] for r in rows if r["mode"] in (mode, "-")))
    values = []
    for label in labels:
        pts = sorted((r["T"], r[key], r["kind"]) for r in rows if r["case"] == label and r.get(key))
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        values += ys
        ax.plot(xs, ys, label=label, **_style(label, pts[0][2]))
    if values:
        first = [r[key] for r in rows if r["T"] == lengths[0] and r.get(key) and r["mode"] in (mode, "-")]
        anchor = math.exp(sum(math.log(v) for v in first) / len(first)) if first else min(values)
        _guides(ax, lengths, anchor)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)


def plot_ops(result: dict, out: Path) -> list[Path]:
    """``ops_time.png`` (fwd+bwd and fwd, causal and bidirectional) and ``ops_memory.png``."""
    rows, cfg = result["rows"], result["meta"]["config"]
    lengths = sorted({r["T"] for r in rows})
    modes = [m for m in ("causal", "bidir") if any(r["mode"] == m for r in rows)]
    machine = result["meta"]["machine"]
    sub = (f"B={cfg['batch_size']}, D={cfg['d_model']}, {cfg['dtype']}, {machine['device']}, "
           f"{machine['torch_threads']} threads")
    paths = []
    fig, axes = plt.subplots(2, len(modes), figsize=(8.5 * len(modes), 10), squeeze=False)
    for j, mode in enumerate(modes):
        _panel(axes[0][j], rows, "fwd_bwd_ms", mode, lengths, "forward+backward time (ms)",
               f"{mode}: forward+backward ({sub})")
        _panel(axes[1][j], rows, "fwd_ms", mode, lengths, "forward time (ms)", f"{mode}: forward, no grad")
    fig.tight_layout()
    paths.append(out / "ops_time.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    if any(r.get("peak_mem_mib") for r in rows):
        fig, axes = plt.subplots(1, len(modes), figsize=(8.5 * len(modes), 5), squeeze=False)
        for j, mode in enumerate(modes):
            _panel(axes[0][j], rows, "peak_mem_mib", mode, lengths, "peak extra memory, fwd+bwd (MiB)",
                   f"{mode}: peak memory ({sub})")
        fig.tight_layout()
        paths.append(out / "ops_memory.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def plot_lines(series: dict[str, list[tuple[float, float]]], path: Path, xlabel: str, ylabel: str, title: str,
               logy: bool = True) -> Path:
    """One line per series on log2-x axes (decode latency vs position and the like)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, pts in series.items():
        pts = sorted(p for p in pts if p[1] is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name,
                    **({"color": "black", "linewidth": 2.4} if name == BASELINE else {}))
    ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bars(groups: list[str], series: dict[str, list[float | None]], path: Path, ylabel: str,
              title: str) -> Path:
    """Grouped bars: one group per x label (e.g. T), one bar per series (e.g. model)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    n = max(1, len(series))
    width = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [v or 0 for v in values], width=width, label=name,
               **({"color": "black"} if name == BASELINE else {}))
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", which="both", alpha=0.25)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
