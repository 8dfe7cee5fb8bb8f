"""Quality at equal training time: the metric a run had reached within the baseline's training seconds."""
from __future__ import annotations

import json

from linmix.compare.equal_time import add_equal_time, clocked_evals, metric_within


def _run(tmp_path, name, step_s, evals):
    """A run logging every 10 steps at ``step_s`` seconds per step, evaluated at ``evals`` {step: loss}."""
    d = tmp_path / name
    d.mkdir()
    rows = [{"type": "train", "step": s, "step_s": step_s, "loss": 1.0} for s in range(10, 41, 10)]
    rows += [{"type": "eval", "step": s, "val_loss": v} for s, v in evals.items()]
    d.joinpath("metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[::-1]))  # any order
    return d


def test_clock_counts_only_training_steps_and_orders_evaluations(tmp_path):
    d = _run(tmp_path, "a", 0.5, {20: 3.0, 40: 2.0})
    total, evals = clocked_evals(d, "val_loss")
    assert total == 20.0 and evals == [(10.0, 3.0), (20.0, 2.0)]
    assert metric_within(d, "val_loss", 10.0) == 3.0 and metric_within(d, "val_loss", 19.9) == 3.0
    assert metric_within(d, "val_loss", 9.9) is None


def test_a_slower_candidate_is_scored_where_the_baseline_clock_ran_out(tmp_path):
    base = _run(tmp_path, "base", 0.5, {20: 3.0, 40: 2.5})  # 20 s in all
    slow = _run(tmp_path, "slow", 1.0, {20: 2.8, 40: 2.0})  # twice as slow: 20 s buys 20 steps
    fast = _run(tmp_path, "fast", 0.25, {20: 3.1, 40: 2.9})
    runs = [{"candidate": c, "seed": 0, "run_dir": str(d)} for c, d in (("b", base), ("s", slow), ("f", fast))]
    assert add_equal_time(runs, "b", "val_loss") == "val_loss_at_baseline_s"
    assert [r["val_loss_at_baseline_s"] for r in runs] == [2.5, 2.8, 2.9]
