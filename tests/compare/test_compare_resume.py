"""An interrupted ``linmix compare`` continues: finished runs are read back from their ``record.json``, only
the missing ones train, a record made under another config is refused, and the table is the same."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import linmix.train
from linmix.compare.experiments import run_experiment
from linmix.compare.records import RECORD
from linmix.compare.run import run_compare
from linmix.config import CompareConfig
from linmix.config_io import write_config_file


def _config(data_dir: Path, out: Path, steps: int = 3, time_budget: float | None = None) -> dict:
    run = {"eval_every": 3, "eval_batches": 1, "final_eval_batches": 2, "patience": 0, "progress": False}
    if time_budget is None:
        run["steps"] = steps
    return {"candidates": ["attention", "summation"], "seeds": 1, "lrs": [], "out": str(out),
            "time_budget_s": time_budget, "probe_steps": 4,
            "base": {"task": "lm", "model": {"d_model": 16, "n_heads": 2, "max_len": 16},
                     "data": {"dataset": "tinyshakespeare", "tokenizer": "char", "batch_size": 4,
                              "data_dir": str(data_dir)},
                     "optim": {"lr": 3e-3, "warmup": 0}, "run": run}}


def _count_training(monkeypatch) -> list[str]:
    trained: list[str] = []
    real = linmix.train.run_training

    def counting(config, *args, **kwargs):
        trained.append(config.model.layers)
        return real(config, *args, **kwargs)

    monkeypatch.setattr(linmix.train, "run_training", counting)
    return trained


@pytest.fixture
def finished(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "cmp"
    first = run_compare(CompareConfig.from_dict(_config(data_dir, out)))
    return out, first


def test_every_finished_run_leaves_a_record_with_its_config(finished):
    out, first = finished
    for run in first["runs"]:
        record = json.loads((Path(run["run_dir"]) / RECORD).read_text())
        assert record["candidate"] == run["candidate"] and record["val_loss"] == run["val_loss"]
        assert record["train_config"]["model"]["layers"] == run["candidate"]
        assert "data_dir" not in record["train_config"]["data"]  # where the data lives cannot change a result


def test_resume_trains_only_the_runs_without_a_record(finished, data_dir, monkeypatch):
    out, first = finished
    summation = Path(next(r["run_dir"] for r in first["runs"] if r["candidate"] == "summation"))
    (summation / RECORD).unlink()  # interrupted: its folder is there, its record is not
    trained = _count_training(monkeypatch)
    again = run_compare(CompareConfig.from_dict(_config(data_dir, out)), resume=True)
    assert trained == ["summation"]
    assert [r["val_loss"] for r in again["runs"]] == [r["val_loss"] for r in first["runs"]]
    assert (summation / RECORD).is_file()
    trained.clear()
    run_compare(CompareConfig.from_dict(_config(data_dir, out)), resume=True)
    assert trained == []


def test_without_resume_a_used_folder_is_an_error_naming_resume(finished, data_dir):
    out, _ = finished
    with pytest.raises(ValueError, match="--resume"):
        run_compare(CompareConfig.from_dict(_config(data_dir, out)))


def test_a_record_made_under_another_config_is_refused(finished, data_dir):
    out, _ = finished
    with pytest.raises(ValueError, match="finished under a different config"):
        run_compare(CompareConfig.from_dict(_config(data_dir, out, steps=4)), resume=True)


def test_a_time_budget_comparison_reuses_its_probed_step_counts(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "budget"
    first = run_compare(CompareConfig.from_dict(_config(data_dir, out, time_budget=0.5)))
    steps = {r["candidate"]: r["total_steps"] for r in first["runs"]}
    saved = {p.parent.name: json.loads(p.read_text())["steps"] for p in (out / "probe").glob("*/steps.json")}
    assert saved == steps
    trained = _count_training(monkeypatch)
    again = run_compare(CompareConfig.from_dict(_config(data_dir, out, time_budget=0.5)), resume=True)
    assert trained == [] and {r["candidate"]: r["total_steps"] for r in again["runs"]} == steps


def test_an_interrupted_experiment_continues(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    folder = tmp_path / "results" / "job"
    folder.mkdir(parents=True)
    out = tmp_path / "runs" / "job"
    path = write_config_file(_config(data_dir, out), folder / "config.toml")
    run_experiment(path)
    (folder / "results.md").unlink()
    (out / "results.md").unlink()  # the compare itself did not finish: no table in its folder
    attention = next(p for p in out.glob("attention/*") if p.is_dir())
    (attention / RECORD).unlink()
    trained = _count_training(monkeypatch)
    assert run_experiment(path)["status"] == "ran"
    assert trained == ["attention"] and (folder / "results.md").is_file()
