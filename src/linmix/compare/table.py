"""Aggregate per-seed results into one comparison table (markdown, CSV, JSON)."""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; NaN-free inputs expected)."""
    clean = [v for v in values if v is not None and math.isfinite(v)]
    if not clean:
        return float("nan"), float("nan")
    return statistics.fmean(clean), (statistics.stdev(clean) if len(clean) > 1 else 0.0)


def aggregate(runs: list[dict[str, Any]], metrics: list[str], baseline: str,
              speed: str = "tokens_per_s") -> list[dict[str, Any]]:
    """One row per candidate: params, each metric's mean/std over seeds, throughput and the speed-up.

    ``runs`` hold ``candidate``, ``params``, ``d_model``, ``tokens_per_s``, ``wall_s`` and the metrics.
    The speed-up is the candidate's mean training tokens/s over the baseline's, from the same invocation;
    with ``speed="train_s"`` it is the baseline's mean training seconds over the candidate's instead (for
    rows without tokens, such as a ridge regression's).
    """
    order = list(dict.fromkeys(r["candidate"] for r in runs))
    base_speed = mean_std([r.get(speed) for r in runs if r["candidate"] == baseline])[0]
    rows = []
    for cand in order:
        mine = [r for r in runs if r["candidate"] == cand]
        row: dict[str, Any] = {"candidate": cand, "params": mine[0]["params"], "d_model": mine[0]["d_model"],
                               "seeds": len(mine)}
        for m in metrics:
            row[m], row[f"{m}_std"] = mean_std([r.get(m) for r in mine])
        row["tokens_per_s"], _ = mean_std([r["tokens_per_s"] for r in mine])
        row["wall_s"], _ = mean_std([r["wall_s"] for r in mine])
        row["s_per_epoch"], _ = mean_std([r.get("s_per_epoch") for r in mine])
        row["train_s"], _ = mean_std([r.get("train_s") for r in mine])
        row["steps"] = mine[0].get("steps")
        usable = base_speed and math.isfinite(base_speed) and row[speed]
        row["speedup"] = (float("nan") if not usable else
                          row[speed] / base_speed if speed == "tokens_per_s" else base_speed / row[speed])
        rows.append(row)
    return rows


def _fmt(value: float, std: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    return f"{text} ± {std:.{digits}f}" if std else text


def to_markdown(rows: list[dict[str, Any]], metrics: list[str], baseline: str, train_time: bool = False) -> str:
    """A markdown table; the baseline row is marked, every metric shows mean ± std over seeds. ``train_time``
    adds the training seconds column (what a ``speed="train_s"`` speed-up compares); a value a row does not
    have (a ridge regression's d_model, tokens/s or steps) is ``-`` or ``n/a``."""
    per_epoch = any(math.isfinite(r.get("s_per_epoch", float("nan"))) for r in rows)
    budget = len({r.get("steps") for r in rows}) > 1
    head = ["candidate", "params", "d_model", *metrics, "train tokens/s", *(["train s/epoch"] if per_epoch else []),
            *(["train s"] if train_time else []), *(["steps"] if budget else []), "wall s", "speed-up"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = f"{r['candidate']} (baseline)" if r["candidate"] == baseline else r["candidate"]
        digits = {m: 4 if "acc" in m or m.startswith("test_") else 3 for m in metrics}
        speedup = r["speedup"]
        cells = [name, f"{r['params']:,}", "-" if r["d_model"] is None else str(r["d_model"]),
                 *(_fmt(r[m], r[f"{m}_std"] if r["seeds"] > 1 else None, digits[m]) for m in metrics),
                 "n/a" if not math.isfinite(r["tokens_per_s"]) else f"{r['tokens_per_s']:,.0f}",
                 *([_fmt(r["s_per_epoch"], None, 1)] if per_epoch else []),
                 *([_fmt(r["train_s"], None, 2 if r["train_s"] < 10 else 0)] if train_time else []),
                 *([str(r["steps"]) if r["steps"] is not None else "-"] if budget else []), f"{r['wall_s']:.0f}",
                 f"{speedup:.2f}x" if math.isfinite(speedup) else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(out: Path, rows: list[dict[str, Any]], runs: list[dict[str, Any]], metrics: list[str],
                baseline: str, header: str, train_time: bool = False) -> str:
    """Write ``results.md``, ``results.csv`` (one row per candidate) and ``runs.json`` (one per seed)."""
    out.mkdir(parents=True, exist_ok=True)
    plot = ("![quality per second: training loss against training seconds](loss_vs_time.png)\n\n"
            if not train_time else "")
    md = header.rstrip() + "\n\n" + plot + to_markdown(rows, metrics, baseline, train_time)
    (out / "results.md").write_text(md)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "runs.json").write_text(json.dumps(runs, indent=2, default=str) + "\n")
    return md


def grid_markdown(grid_runs: list[dict[str, Any]], metric: str) -> str:
    """Per candidate, ``metric`` at every learning rate of the grid (mean over seeds); the best in bold."""
    lrs = sorted({r["lr"] for r in grid_runs})
    lines = [f"LR grid: {metric} at every learning rate (mean over seeds; best per candidate in bold)", "",
             "| candidate | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
    for cand in dict.fromkeys(r["candidate"] for r in grid_runs):
        values = {}
        for lr in lrs:
            scores = [r[metric] for r in grid_runs if r["candidate"] == cand and r["lr"] == lr
                      and r.get(metric) is not None]
            if scores:
                values[lr] = sum(scores) / len(scores)
        best = (min if metric.endswith(("loss", "ppl", "rmse", "mae")) else max)(values.values(), default=None)
        cells = ["n/a" if lr not in values else (f"**{values[lr]:.4f}**" if values[lr] == best else f"{values[lr]:.4f}")
                 for lr in lrs]
        lines.append(f"| {cand} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_grid(out: Path, grid_runs: list[dict[str, Any]], metric: str) -> str:
    """Append the LR-grid table to ``results.md``, write every run of the grid to ``grid_runs.json``."""
    (out / "grid_runs.json").write_text(json.dumps(grid_runs, indent=2, default=str) + "\n")
    md = (out / "results.md").read_text().rstrip() + "\n\n" + grid_markdown(grid_runs, metric)
    (out / "results.md").write_text(md)
    return md
