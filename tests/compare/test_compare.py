"""`linmix compare` on a tiny budget: the table's schema, parameter matching, and its error paths."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

import linmix
from linmix.compare.run import Candidate, _loss_by_training_time, plan_sizes, resolve_compare, run_compare
from linmix.config import compare_config
from linmix.compare.sizing import count_params, size_to_budget, within_budget
from linmix.compare.table import grid_markdown


def test_size_to_budget_lands_within_ten_percent_for_every_lm_spec():
    target = count_params(linmix.LanguageModel(65, 64, "attention*4", max_len=128))
    for spec in ["summation*4", "summation*3,attention", "spectral*4", "topological*4", "aggregation*4",
                 "linear_attention*4", "local_attention*4"]:
        d, p = size_to_budget(lambda d: linmix.LanguageModel(65, d, spec, max_len=128), target)
        assert d % 8 == 0
        assert within_budget(p, target), (spec, d, p, target)


def test_candidate_parsing_and_defaults():
    assert Candidate.parse("summation@bare").name == "summation@bare"
    assert Candidate.parse("summation*3,attention").arch == "block"
    with pytest.raises(ValueError, match="'block' or 'bare'"):
        Candidate.parse("summation@deep")
    cfg = resolve_compare(compare_config(task="lm"))
    assert cfg.baseline == "attention*4" and cfg.base.data.dataset == "tinyshakespeare"
    assert cfg.base.run.steps == 800 and cfg.base.model.max_len == 256 and cfg.base.data.batch_size == 12
    assert cfg.candidates == ["attention*4", "summation*4", "summation*3,attention", "spectral*4",
                              "spectral*3,local_attention(window=32)"]
    assert resolve_compare(compare_config("lm", steps=50)).base.run.steps == 50
    with pytest.raises(ValueError, match="not one of the candidates"):
        resolve_compare(compare_config(task="lm", baseline="linear_attention*4"))


def test_plan_sizes_keeps_the_baseline_and_matches_the_rest():
    cfg = resolve_compare(compare_config(task="classify", candidates=["attention@bare", "summation@bare", "summation,attention"],
                        d_model=128))
    sizes = plan_sizes(cfg, vocab_size=5000, num_classes=4)
    assert sizes["attention@bare"][0] == 128
    base = sizes["attention@bare"][1]
    assert all(within_budget(p, base) for _, p in sizes.values())


def test_tiny_lm_compare_writes_a_complete_table(data_dir, tmp_path):
    cfg = compare_config(task="lm", candidates=["attention*2", "summation*2", "summation,attention"], d_model=32,
                        max_len=32, batch_size=4, steps=4, eval_every=2, seeds=2, data_dir=str(data_dir),
                        out=str(tmp_path / "cmp"), progress=False)
    result = run_compare(cfg)
    out = tmp_path / "cmp"
    assert {"results.md", "results.csv", "runs.json", "val_curves.png", "loss_vs_time.png"} <= {
        p.name for p in out.iterdir()}
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["candidate"] for r in rows] == ["attention*2", "summation*2", "summation,attention"]
    base = int(rows[0]["params"])
    for r in rows:
        assert abs(int(r["params"]) - base) <= 0.1 * base
        assert 0 < float(r["val_loss"]) < 10 and 0 <= float(r["val_acc"]) <= 1
        assert float(r["tokens_per_s"]) > 0 and int(r["seeds"]) == 2
    assert float(rows[0]["speedup"]) == pytest.approx(1.0)
    runs = json.loads((out / "runs.json").read_text())
    assert len(runs) == 6 and {r["seed"] for r in runs} == {0, 1}
    assert "| attention*2 (baseline) |" in result["markdown"] and "±" in result["markdown"]


def test_tiny_classify_compare_sweeps_the_lr_grid_for_every_candidate(data_dir, tmp_path):
    cfg = compare_config(task="classify", dataset="reuters", candidates=["attention@bare", "summation@bare"],
                        d_model=16, max_len=32, batch_size=8, steps=3, eval_every=3, lrs=[1e-3, 3e-3],
                        vocab_size=500, data_dir=str(data_dir), out=str(tmp_path / "c"), progress=False)
    result = run_compare(cfg)
    assert [r["candidate"] for r in result["rows"]] == ["attention@bare", "summation@bare"]
    dirs = sorted(p.name for p in (tmp_path / "c" / "summation-bare").iterdir())
    assert dirs == ["seed0-lr0.001", "seed0-lr0.003"]
    assert all(r["lr"] in (1e-3, 3e-3) for r in result["runs"])
    grid = json.loads((tmp_path / "c" / "grid_runs.json").read_text())
    assert sorted((r["candidate"], r["lr"]) for r in grid) == [
        ("attention@bare", 1e-3), ("attention@bare", 3e-3), ("summation@bare", 1e-3), ("summation@bare", 3e-3)]
    for chosen in result["runs"]:  # the reported run is the grid's best of its candidate
        assert chosen["val_acc"] == max(r["val_acc"] for r in grid if r["candidate"] == chosen["candidate"])
    assert "| lr 0.001 | lr 0.003 |" in result["markdown"] and "**" in result["markdown"]


def test_grid_markdown_bolds_the_best_lr_of_each_candidate():
    grid = [{"candidate": "a", "lr": 1e-3, "val_acc": 0.5}, {"candidate": "a", "lr": 3e-3, "val_acc": 0.7},
            {"candidate": "a", "lr": 3e-3, "val_acc": 0.6}, {"candidate": "b", "lr": 1e-3, "val_ppl": 9.0}]
    md = grid_markdown(grid, "val_acc")
    assert "| a | 0.5000 | **0.6500** |" in md and "| b | n/a | n/a |" in md
    assert "| b | **9.0000** |" in grid_markdown([grid[-1]], "val_ppl")


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path):
    for argv, needle in [(["lm", "--layers", "atention"], "unknown mixer"),
                         (["lm", "--steps", "-3"], "steps must be a positive integer"),
                         (["lm", "--layers", "local_attention(window=0)"], "window must be a positive integer"),
                         (["classify", "--layers", "summation@deep"], "'block' or 'bare'")]:
        proc = subprocess.run([sys.executable, "-m", "linmix.cli", "compare", *argv, "--out", str(tmp_path / "x")],
                              capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_time_budget_gives_each_candidate_the_steps_its_probe_measured(data_dir, tmp_path):
    cfg = compare_config(task="lm", candidates=["attention*2", "summation*2"], d_model=32, max_len=64,
                        batch_size=4, time_budget_s=0.5, probe_steps=6, eval_every=1000, final_eval_batches=2,
                        data_dir=str(data_dir), out=str(tmp_path / "t"), progress=False)
    result = run_compare(cfg)
    for run in result["runs"]:
        probe = tmp_path / "t" / "probe" / run["candidate"].replace("*", "-")
        rows = [json.loads(line) for line in (probe / "metrics.jsonl").read_text().splitlines()]
        step_s = sorted(r["step_s"] for r in rows if r["type"] == "train" and r["step"] > 2)
        assert run["steps"] == max(1, int(0.5 / step_s[len(step_s) // 2]))
    assert "training time budget (0.5 s" in result["markdown"]
    with pytest.raises(ValueError, match="not steps and time_budget_s"):
        resolve_compare(compare_config(task="lm", steps=10, time_budget_s=5))


def test_classify_by_epochs_reports_seconds_per_epoch(data_dir, tmp_path):
    cfg = compare_config(task="classify", dataset="reuters", candidates=["attention@bare", "summation@bare"],
                        d_model=16, max_len=16, batch_size=64, epochs=0.05, eval_every=2, eval_batches=2,
                        vocab_size=300, data_dir=str(data_dir), out=str(tmp_path / "e"), progress=False)
    result = run_compare(cfg)
    for run in result["runs"]:
        assert run["s_per_epoch"] > 0 and run["final_val_acc"] is not None
    assert "train s/epoch" in result["markdown"] and "epochs (0.05 = " in result["markdown"]


def test_train_config_checks_adam_betas():
    from linmix.train import train_config

    assert train_config(task="lm", beta2=0.99).resolved().optim.beta2 == 0.99
    with pytest.raises(ValueError, match="beta2 must lie in"):
        train_config(task="lm", beta2=1.0).resolved()


def test_loss_by_training_time_adds_up_windows_and_skips_evaluation(tmp_path):
    records = [{"type": "train", "step": 10, "loss": 3.0, "step_s": 0.5},
               {"type": "eval", "step": 10, "val_loss": 2.9},
               {"type": "train", "step": 15, "loss": 2.5, "step_s": 0.2},
               {"type": "train", "step": 20, "loss": 2.0, "step_s": 0.4}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    points = _loss_by_training_time(tmp_path)
    assert [round(t, 6) for t, _ in points] == [5.0, 6.0, 8.0]
    assert [loss for _, loss in points] == [3.0, 2.5, 2.0]
    assert _loss_by_training_time(tmp_path / "missing") == []
