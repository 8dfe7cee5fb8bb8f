"""``linmix experiment``: one config file runs end to end into its folder (resumable), and the overview of
a folder of tables is rebuilt from its CSVs alone."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from linmix.cli import main
from linmix.compare.experiments import OUTPUTS, run_experiment
from linmix.compare.summary import build_summary, write_summary
from linmix.config_io import write_config_file

RESULTS = Path(__file__).resolve().parents[2] / "results" / "compare"


def _tiny_job(tmp_path: Path, data_dir: Path) -> Path:
    """A two-candidate LM comparison of a few steps, its config in ``tmp/results/tiny/config.toml``."""
    folder = tmp_path / "results" / "tiny"
    folder.mkdir(parents=True)
    config = {"candidates": ["attention", "summation"], "seeds": 1, "lrs": [], "out": str(tmp_path / "runs" / "tiny"),
              "base": {"task": "lm", "model": {"d_model": 16, "n_heads": 2, "max_len": 16},
                       "data": {"dataset": "tinyshakespeare", "tokenizer": "char", "batch_size": 4,
                                "data_dir": str(data_dir)},
                       "optim": {"lr": 3e-3, "warmup": 0},
                       "run": {"steps": 3, "eval_every": 3, "eval_batches": 1, "final_eval_batches": 2,
                               "patience": 0, "progress": False}}}
    return write_config_file(config, folder / "config.toml")


def test_an_experiment_runs_into_its_folder_then_skips_until_forced(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = _tiny_job(tmp_path, data_dir)
    first = run_experiment(path, samples=True, command="linmix experiment run tiny.toml")
    folder = path.parent
    assert first["status"] == "ran"
    assert set(OUTPUTS) - {"grid_runs.json"} <= {p.name for p in folder.iterdir()}  # no LR grid, no grid runs
    command = (folder / "command.txt").read_text().splitlines()
    assert command[0] == "OMP_NUM_THREADS=1 linmix experiment run tiny.toml"
    assert command[1].startswith("# total wall time:") and command[2].startswith("# job wall time:")
    samples = (folder / "samples.md").read_text()
    assert samples.startswith("# Samples (temperature 0.8, top-k 40, seed 0, prompt: newline)\n")
    assert "\n## attention\n\n```\n\n" in samples and "\n## summation\n" in samples

    stamp = (folder / "results.md").stat().st_mtime_ns
    assert run_experiment(path)["status"] == "skipped"
    (folder / "results.md").unlink()  # copied outputs lost, the compare run kept: collected, not retrained
    assert run_experiment(path)["status"] == "collected"
    assert main(["experiment", "run", str(path), "--force"]) == 0  # the CLI: rerun from scratch
    assert (folder / "results.md").stat().st_mtime_ns != stamp
    assert "linmix" in (folder / "command.txt").read_text().splitlines()[0]


def test_an_experiment_refuses_to_clear_its_own_folder(tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    path = write_config_file({"candidates": ["attention", "summation"], "out": str(tmp_path),
                              "base": {"task": "lm", "run": {"steps": 2}}}, folder / "config.toml")
    with pytest.raises(ValueError, match="refusing to use"):
        run_experiment(path)
    assert (folder / "keep.txt").exists()


def test_the_committed_summary_is_rebuilt_byte_for_byte():
    assert build_summary(RESULTS) == (RESULTS / "SUMMARY.md").read_text()


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_summary_of_a_folder_of_csvs_shows_the_jobs_it_finds(tmp_path):
    classify = [dict(candidate=c, val_acc=acc, speedup=s, s_per_epoch=e) for c, acc, s, e in
                (("attention@bare", 0.8712, 1.0, 110.6), ("summation@bare", 0.8651, 4.66, 23.0))]
    _write_csv(tmp_path / "classify-imdb-256" / "results.csv", classify)
    lm = [dict(candidate="attention*4", val_ppl=8.431, val_acc=0.3731, speedup=1.0)]
    _write_csv(tmp_path / "lm-tinyshakespeare" / "results.csv", lm)
    grid = [{"candidate": "attention@bare", "lr": lr, "val_acc": acc, "status": "completed"}
            for lr, acc in ((3e-4, 0.41), (1e-3, 0.53))]
    (tmp_path / "lrgrid-20newsgroups-256").mkdir()
    (tmp_path / "lrgrid-20newsgroups-256" / "grid_runs.json").write_text(json.dumps(grid))
    text = write_summary(tmp_path).read_text()
    assert "| imdb | 256 | 0.871 / 1x | 0.865 / 4.7x | 111 | 0.88 vs 0.87 |" in text
    assert "| attention*4 | 8.43 / 0.373 / 1x |" in text
    assert "| lrgrid-20newsgroups-256 | attention@bare | 0.410 | **0.530** |" in text
    assert "## 3. nanoGPT" not in text and "## 4. Long context" not in text  # jobs not run: sections left out
