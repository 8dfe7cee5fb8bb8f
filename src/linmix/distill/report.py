"""The figures and the README of a distillation: loss curves from the stages' logs, and the summary as text."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from linmix.distill.stage import read_log
from linmix.train.reporting import save_png

#: the val-loss rows of the README, in order, with what each one measures
STAGES = (("teacher", "the original model"), ("swap", "converted, before any training (plain swap)"),
          ("transfer", "after attention transfer"), ("recovery", "after recovery finetuning"))


def plot_log(log: str | os.PathLike, path: str | os.PathLike, title: str = "", log_y: bool = True) -> Path | None:
    """One line per loss name of a stage's JSONL log against step (log scale with ``log_y``); written
    atomically; ``None`` when the log is empty."""
    records = read_log(log)
    if not records:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(name for r in records for name in r["losses"]))
    fig = Figure(figsize=(7.5, 4.5))
    FigureCanvasAgg(fig)  # a bare Figure on the Agg canvas: the caller's pyplot state is left alone
    ax = fig.add_subplot()
    for name in names:
        points = [(r["step"], r["losses"][name]) for r in records if name in r["losses"]]
        points = [(s, v) for s, v in points if math.isfinite(v) and (v > 0 or not log_y)]
        if points:
            ax.plot([s for s, _ in points], [v for _, v in points], "-", marker="o" if len(points) < 30 else None,
                    markersize=3, label=name)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7 if len(names) > 6 else 8)
    fig.tight_layout()
    target = Path(path)
    return save_png(fig, target)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def readme_text(summary: dict[str, Any]) -> str:
    """The README of a ``linmix distill`` folder from its summary."""
    val = summary["val_loss"]
    lines = [f"# Distilling {summary['checkpoint']} into {summary['mixer']}", "",
             f"Attention transfer (LoLCATs, arXiv 2410.10254; Hedgehog, arXiv 2402.04347) for "
             f"{summary['transfer']['steps']} steps ({summary['transfer']['loss']} loss), then recovery "
             f"finetuning for {summary['recovery']['steps']} steps (kl_weight {summary['recovery']['kl_weight']}, "
             f"lora_rank {summary['recovery']['lora_rank']}), on the run's own dataset "
             f"({summary['dataset']}, {summary['tokenizer']} tokenizer).", "",
             f"Replaced: {', '.join(summary['replaced']) or 'none'}.  ",
             f"Kept as attention: {', '.join(summary['kept']) or 'none'}.", "",
             f"## Validation loss ({summary['val_tokens']:,} tokens)", "",
             "| model | val loss | vs. teacher |", "|---|---|---|"]
    for key, what in STAGES:
        gap = val[key] - val["teacher"] if isinstance(val.get(key), float) else None
        lines.append(f"| {what} | {_fmt(val.get(key))} | {'-' if gap is None else f'{gap:+.4f}'} |")
    lines += ["", "## Attention transfer, per layer", "",
              "Each converted layer's loss against its teacher on the teacher's inputs: at step 0 (the plain "
              "swap) and over the last logged steps.", "", "| layer | step 0 | final |", "|---|---|---|"]
    first, final = summary["transfer"]["initial"], summary["transfer"]["final"]
    for path in final:
        lines.append(f"| `{path}` | {_fmt(first.get(path))} | {_fmt(final[path])} |")
    lines += ["", "![attention transfer](transfer/transfer_loss.png)", "",
              "![recovery](recovery/recovery_loss.png)", "",
              "## Files", "",
              "* `model/`: the distilled model (`linmix sample model/`), adapters merged, teachers dropped.",
              "* `transfer/`, `recovery/`: each stage's log (`*.jsonl`), figure and resumable `state/`; "
              "running the same command again resumes.",
              "* `summary.json`: everything above as data.", "",
              "Reproduce with:", "", "```", summary["command"], "```", ""]
    return "\n".join(lines)
