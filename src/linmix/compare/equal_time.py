"""Quality at equal training time: each run's validation metric at the baseline's training seconds.

Equal steps favour the slower model, equal seconds the faster one; a table that shows both says which
candidates win either way. A run's training clock is the sum of its logged step times (evaluation excluded:
``step_s`` x steps per logged window, as in the quality-per-second plot); its metric at ``s`` seconds is its
last periodic evaluation (``eval_batches`` batches) whose clock is within ``s``. Only candidates trained with a
periodic evaluation get a value; the metric is named ``<monitor>_at_baseline_s``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def clocked_evals(run_dir: Path, metric: str) -> tuple[float, list[tuple[float, float]]]:
    """(total training seconds, [(training seconds so far, metric)] per periodic evaluation) of one run."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    # a step's train window is logged before the evaluation made after it
    rows.sort(key=lambda r: (r.get("step", 0), r.get("type") != "train"))
    seconds, last_step, evals = 0.0, 0, []
    for r in rows:
        if r.get("type") == "train" and r.get("step_s"):
            seconds += r["step_s"] * (r["step"] - last_step)
            last_step = r["step"]
        elif r.get("type") == "eval" and r.get(metric) is not None:
            evals.append((seconds, r[metric]))
    return seconds, evals


def metric_within(run_dir: Path, metric: str, seconds: float) -> float | None:
    """The run's last periodic ``metric`` reached within ``seconds`` of training (None: none was)."""
    _, evals = clocked_evals(run_dir, metric)
    within = [value for clock, value in evals if clock <= seconds * (1 + 1e-9)]
    return within[-1] if within else None


def add_equal_time(runs: list[dict[str, Any]], baseline: str, monitor: str) -> str | None:
    """Set ``<monitor>_at_baseline_s`` on every run (against the baseline run of the same random seed);
    returns the new metric's name, or None when the baseline has no training clock."""
    key = f"{monitor}_at_baseline_s"
    budget = {r["seed"]: clocked_evals(Path(r["run_dir"]), monitor)[0] for r in runs
              if r["candidate"] == baseline and r.get("run_dir")}
    if not any(budget.values()):
        return None
    for r in runs:
        seconds = budget.get(r["seed"])
        r[key] = metric_within(Path(r["run_dir"]), monitor, seconds) if seconds and r.get("run_dir") else None
    return key
