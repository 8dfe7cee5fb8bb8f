"""The LR-schedule comparison: three contenders at the same steps and seeds, its table and plot, and a rerun
that reads finished runs instead of training them again."""
from __future__ import annotations

import csv
import json

import pytest
from train_helpers import TINY_LM

from linmix.cli import main
from linmix.train import schedule_compare
from linmix.train.schedule_compare import compare_schedules, schedule_candidates
from linmix.config import train_config


def tiny_base(root, **kw):
    return train_config("lm", dataset="tinyshakespeare", data_dir=str(root), d_model=16, n_heads=2,
                        layers="summation,attention", max_len=16, batch_size=4, steps=40, warmup=4, eval_every=20,
                        eval_batches=2, final_eval_batches=4, log_every=5, progress=False, **kw)


def test_candidates_change_only_the_schedule_and_controller(tiny_root):
    base = tiny_base(tiny_root, lr=2e-3)
    got = schedule_candidates(base)
    assert list(got) == ["cosine", "constant", "qlearning"]
    assert [(c.optim.schedule, c.optim.lr_controller) for c in got.values()] == [
        ("cosine", "none"), ("constant", "none"), ("constant", "qlearning")]
    for cfg in got.values():
        same = cfg.with_overrides({"optim.schedule": None, "optim.lr_controller": "none"})
        assert same == base
    with pytest.raises(ValueError, match="unknown schedule contender"):
        schedule_candidates(base, ["cosine", "step"])


def test_compare_writes_table_and_plot_and_a_rerun_trains_nothing(tiny_root, tmp_path, monkeypatch):
    out = tmp_path / "sched"
    calls = []
    real = schedule_compare.run_training

    def spy(config, resume=False):
        calls.append((config.run.out, resume))
        return real(config, resume=resume)

    monkeypatch.setattr(schedule_compare, "run_training", spy)
    rows = compare_schedules(tiny_base(tiny_root), seeds=2, out=out)
    assert len(calls) == 6 and not any(resume for _, resume in calls)
    assert [r["contender"] for r in rows] == ["cosine", "constant", "qlearning"]
    for r in rows:
        assert r["seeds"] == "0 1" and r["steps"] == 40 and r["status"] == "completed"
        assert r["val_loss"] > 0 and r["val_loss_std"] >= 0 and len(r["val_losses"].split()) == 2
    assert rows[0]["lr_changes"] == rows[1]["lr_changes"] == 0
    with open(out / "schedules.csv") as f:
        table = list(csv.DictReader(f))
    assert [t["contender"] for t in table] == ["cosine", "constant", "qlearning"]
    assert "± " in (out / "schedules.md").read_text()
    assert (out / "schedules.png").stat().st_size > 0
    assert (out / "qlearning" / "seed1" / "lr_curve.png").is_file()

    calls.clear()
    assert compare_schedules(tiny_base(tiny_root), seeds=2, out=out) == rows
    assert calls == []  # every run was finished: nothing trained

    # an unfinished run (no summary) continues from its checkpoint; the others are only read
    (out / "constant" / "seed1" / "summary.json").unlink()
    again = compare_schedules(tiny_base(tiny_root), seeds=2, out=out)
    assert calls == [(str(out / "constant" / "seed1"), True)]
    assert again[1]["val_losses"] == rows[1]["val_losses"]

    with pytest.raises(ValueError, match="steps is 40; got 30"):
        compare_schedules(tiny_base(tiny_root).with_overrides({"run.steps": 30}), seeds=2, out=out)


def test_train_schedules_command(tiny_root, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train-schedules", "lm", "--data-dir", str(tiny_root), "--out", str(out), *TINY_LM,
                 "--steps", "30", "--eval-every", "15", "--eval-batches", "2", "--final-eval-batches", "2",
                 "--seeds", "1", "--contenders", "constant,qlearning"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| constant |" in printed and "| qlearning |" in printed and "cosine" not in printed
    saved = json.loads((out / "qlearning" / "seed0" / "train_config.json").read_text())
    assert (saved["optim"]["schedule"], saved["optim"]["lr_controller"]) == ("constant", "qlearning")


def _schedule_row(name: str, loss: float, std: float, seeds: str = "0 1 2", changes: float = 0.0) -> dict:
    return {"contender": name, "val_loss": loss, "val_loss_std": std, "seeds": seeds, "lr_changes": changes}


def test_verdicts_judge_each_contender_against_cosine_by_the_seed_spread():
    from linmix.train.schedule_compare import verdicts

    rows = [_schedule_row("cosine", 1.50, 0.01), _schedule_row("constant", 1.60, 0.02),
            _schedule_row("qlearning", 1.51, 0.01, changes=12.0)]
    constant, qlearning = verdicts(rows)
    assert constant.startswith("- constant vs cosine: final val loss +0.1000 (worse beyond twice the spread over seeds")
    assert qlearning.startswith("- qlearning vs cosine: final val loss +0.0100 (within twice the spread over seeds")
    assert qlearning.endswith("; 12.0 LR changes per run.")
    better, = verdicts([_schedule_row("cosine", 1.5, 0.01), _schedule_row("qlearning", 1.4, 0.01)])
    assert "better beyond" in better
    single, = verdicts([_schedule_row("cosine", 1.5, 0.0, "0"), _schedule_row("qlearning", 1.4, 0.0, "0")])
    assert "one seed, so no spread" in single
    diverged, = verdicts([_schedule_row("cosine", 1.5, 0.0), _schedule_row("qlearning", float("nan"), 0.0)])
    assert "not comparable" in diverged
    assert verdicts([_schedule_row("constant", 1.5, 0.0)]) == []
