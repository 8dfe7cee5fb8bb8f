"""The LR-schedule comparison: warmup + cosine, warmup + constant, and the topological paper's Q-learning
controller on warmup + constant, with the same model, data, steps and seeds.

``linmix compare`` varies the layers only, so the schedules have their own entry point::

    from linmix.config import train_config
    from linmix.train.schedule_compare import compare_schedules
    rows = compare_schedules(train_config("lm", dataset="tinyshakespeare", steps=1000), seeds=3,
                             out="runs/schedules-tinyshakespeare")

or ``linmix train-schedules lm --dataset tinyshakespeare --steps 1000 --seeds 3 --out ...``. Every run is an
ordinary training run folder, ``OUT/<contender>/seed<k>``, so it resumes: a folder with a ``summary.json`` is
finished and only read (its saved config must match), one without continues from its latest checkpoint.
A diverged run counts as finished (NaN loss). ``OUT/schedules.csv`` and ``schedules.md`` give each contender's
final validation loss (the whole validation split, after the last step) as mean ± sample std over the
seeds, and ``schedules.png`` draws the LR and the validation loss against step for each contender's first seed.
"""
from __future__ import annotations

import csv
import json
import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from linmix.config import TrainConfig
from linmix.train.checkpoint import is_run_dir
from linmix.train.loop import METRICS, SUMMARY
from linmix.train.loop_parts import TrainingDiverged
from linmix.train.reporting import read_metrics, save_png
from linmix.train.run import load_run_config, merge_resume_config, run_training

#: contender -> the only fields it changes in the base config
CONTENDERS: dict[str, dict[str, str]] = {
    "cosine": {"optim.schedule": "cosine", "optim.lr_controller": "none"},
    "constant": {"optim.schedule": "constant", "optim.lr_controller": "none"},
    "qlearning": {"optim.schedule": "constant", "optim.lr_controller": "qlearning"},
}
TABLE_CSV, TABLE_MD, PLOT = "schedules.csv", "schedules.md", "schedules.png"
COLUMNS = ("contender", "schedule", "lr_controller", "seeds", "steps", "val_loss", "val_loss_std", "val_losses",
           "best_val_loss", "lr_changes", "wall_s", "status")


def schedule_candidates(base: TrainConfig, names: Sequence[str] | None = None) -> dict[str, TrainConfig]:
    """``{"cosine": config, ...}``: ``base`` with only its schedule and LR controller changed per contender."""
    names = list(names or CONTENDERS)
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        raise ValueError(f"unknown schedule contender(s) {unknown}; choose from {', '.join(CONTENDERS)}")
    return {name: base.with_overrides(CONTENDERS[name]) for name in names}


def seed_list(base: TrainConfig, seeds: int | Sequence[int]) -> list[int]:
    """``seeds`` as a list: a count ``n`` means ``base.run.seed + 0 .. n - 1``."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be a positive count, got {seeds}")
        return [base.run.seed + i for i in range(seeds)]
    return [int(s) for s in seeds]


def default_out(base: TrainConfig) -> str:
    """``runs/schedules-<task>-<dataset>`` (no timestamp, so rerunning the same command resumes)."""
    return os.path.join("runs", f"schedules-{base.task}-{base.resolved().data.dataset}")


def compare_schedules(base: TrainConfig, seeds: int | Sequence[int] = 1, out: str | os.PathLike | None = None,
                      contenders: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Train (or read back) every contender for every seed; returns one row per contender (:data:`COLUMNS`)
    and writes the table and the plot to ``out`` (default ``base.run.out``, then :func:`default_out`)."""
    folder = Path(out or base.run.out or default_out(base))
    candidates = schedule_candidates(base, contenders)
    seed_values = seed_list(base, seeds)
    runs: dict[str, list[Path]] = {}
    for name, config in candidates.items():
        runs[name] = []
        for seed in seed_values:
            run_dir = folder / name / f"seed{seed}"
            train_one(config.with_overrides({"run.seed": seed, "run.out": str(run_dir)}), run_dir)
            runs[name].append(run_dir)
    rows = [summarize(name, candidates[name], dirs) for name, dirs in runs.items()]
    write_table(rows, folder)
    plot_schedules({name: dirs[0] for name, dirs in runs.items()}, folder / PLOT, title=base.resolved().name)
    return rows


def train_one(config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """The summary of one run: read when finished, else trained (continued when a run folder exists)."""
    done = run_dir / SUMMARY
    if is_run_dir(run_dir):
        try:
            merge_resume_config(load_run_config(run_dir), config)
        except ValueError as err:
            raise ValueError(f"{run_dir} holds a run of another config ({err}); use another out folder") from None
        if done.is_file():
            return json.loads(done.read_text())
    try:
        return run_training(config, resume=is_run_dir(run_dir))
    except TrainingDiverged:
        return json.loads(done.read_text())  # the trainer wrote a "diverged" summary


def _mean_std(values: list[float]) -> tuple[float, float]:
    if any(not math.isfinite(v) for v in values):
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(name: str, config: TrainConfig, run_dirs: list[Path]) -> dict[str, Any]:
    """One table row from the run folders of a contender's seeds."""
    summaries = [json.loads((d / SUMMARY).read_text()) for d in run_dirs]
    finals = [float((s.get("final") or {}).get("val_loss", math.nan)) for s in summaries]
    best = [float(s["best"]["best"]) if s["best"].get("metric") == "val_loss" and s["best"].get("best") is not None
            else math.nan for s in summaries]
    changes = [sum(1 for r in read_metrics(d / METRICS) if r.get("type") == "lr_decision" and r["factor"] != 1)
               for d in run_dirs]
    mean, std = _mean_std(finals)
    saved = summaries[0]["config"]["optim"]
    return {"contender": name, "schedule": saved["schedule"], "lr_controller": saved["lr_controller"],
            "seeds": " ".join(str(s["seed"]) for s in summaries), "steps": summaries[0]["total_steps"],
            "val_loss": mean, "val_loss_std": std, "val_losses": " ".join(f"{v:.4f}" for v in finals),
            "best_val_loss": _mean_std(best)[0], "lr_changes": statistics.fmean(changes),
            "wall_s": statistics.fmean(float(s["wall_time_s"]) for s in summaries),
            "status": " ".join(sorted({s["status"] for s in summaries}))}


def write_table(rows: list[dict[str, Any]], folder: Path) -> None:
    """``schedules.csv`` (every column) and ``schedules.md`` (the readable part)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / TABLE_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| contender | schedule | controller | steps | seeds | final val loss (mean ± std) | per seed | "
             "LR changes | wall s | status |", "|" + " --- |" * 10]
    for r in rows:
        lines.append(f"| {r['contender']} | {r['schedule']} | {r['lr_controller']} | {r['steps']} | {r['seeds']} | "
                     f"{r['val_loss']:.4f} ± {r['val_loss_std']:.4f} | {r['val_losses']} | {r['lr_changes']:.1f} | "
                     f"{r['wall_s']:.0f} | {r['status']} |")
    lines += ["", *verdicts(rows)]
    (folder / TABLE_MD).write_text("\n".join(lines) + "\n")


def verdicts(rows: list[dict[str, Any]], reference: str = "cosine") -> list[str]:
    """One sentence per contender against ``reference``: the difference of mean final validation loss, and
    whether it exceeds twice the larger of the two seed spreads (one seed: no spread, so no verdict)."""
    ref = next((r for r in rows if r["contender"] == reference), None)
    if ref is None:
        return []
    out = []
    for r in rows:
        if r is ref:
            continue
        delta = r["val_loss"] - ref["val_loss"]
        if not math.isfinite(delta):
            out.append(f"- {r['contender']} vs {reference}: not comparable (a run diverged).")
            continue
        seeds = len(str(r["seeds"]).split())
        spread = max(r["val_loss_std"], ref["val_loss_std"])
        if seeds < 2:
            judged = "one seed, so no spread to judge it by"
        elif abs(delta) > 2 * spread:
            judged = f"{'better' if delta < 0 else 'worse'} beyond twice the spread over seeds ({spread:.4f})"
        else:
            judged = f"within twice the spread over seeds ({spread:.4f}): no difference shown"
        out.append(f"- {r['contender']} vs {reference}: final val loss {delta:+.4f} ({judged}); "
                   f"{r['lr_changes']:.1f} LR changes per run.")
    return out


def plot_schedules(first_runs: dict[str, Path], path: Path, title: str = "") -> Path:
    """LR (top, log scale) and validation loss (bottom) against step, one line per contender."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 7.5))
    FigureCanvasAgg(fig)
    ax_lr, ax_train, ax_val = fig.subplots(3, 1, sharex=True)
    for name, run_dir in first_runs.items():
        records = read_metrics(run_dir / METRICS)
        train = [r for r in records if r.get("type") == "train"]
        val = [(r["step"], r["val_loss"]) for r in records if r.get("type") == "eval" and math.isfinite(r["val_loss"])]
        ax_lr.plot([r["step"] for r in train], [r["lr"] for r in train], label=name, drawstyle="steps-pre")
        ax_train.plot([r["step"] for r in train], [r["loss"] for r in train], label=name, linewidth=0.8)
        ax_val.plot([s for s, _ in val], [v for _, v in val], "o-", label=name, markersize=3)
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title(f"{title} (first seed)", fontsize=9)
    ax_train.set_ylabel("training loss (logged window)")
    ax_val.set_ylabel("validation loss")
    ax_val.set_xlabel("step")
    for ax in (ax_lr, ax_train, ax_val):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_png(fig, path)
