"""``linmix analyze`` from the command line: two tiny trained LMs compared, and its error paths."""
from __future__ import annotations

import json

import pytest
import torch

from linmix import LanguageModel
from linmix.analyze.report import FIGURES
from linmix.cli import main


def run_cli(args: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("linmix analyze: error:") and needle in lines[0], lines[0]


def test_analyze_compares_two_models_and_writes_every_figure(tiny_runs, tmp_path, capsys):
    out = tmp_path / "analysis"
    code, stdout, _ = run_cli(["analyze", "--checkpoint", tiny_runs["A"], "--compare", tiny_runs["B"],
                               "--out", out, "--tokens", 64], capsys)
    assert code == 0 and str(out) in stdout
    for stem in FIGURES:
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        json.loads((out / f"{stem}.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    models = {m["label"]: m for m in summary["models"]}
    assert list(models) == ["A", "B"] and summary["tokens"] == 64
    for label, depth in (("A", 2), ("B", 3)):  # summation,attention and attention*3: the embedding + each layer
        m = models[label]
        assert len(m["participation_ratio"]) == len(m["cosine_mean"]) == len(m["cosine_std"]) == depth + 1
        assert len(m["layer_names"]) == depth + 1 and m["layer_names"][0] == "embedding"
        cka = torch.tensor(m["cka"])
        assert cka.shape == (depth + 1, depth + 1)
        torch.testing.assert_close(cka.diagonal(), torch.ones(depth + 1, dtype=cka.dtype))
        assert 0 < m["tokens"] <= 64 and m["params"] > 0
        assert all(0 < pr <= 16 for pr in m["participation_ratio"])  # d_model 16 bounds the dimensionality
    trajectories = json.loads((out / "trajectories.json").read_text())
    assert len(trajectories["B"]["tokens"]) == 6 and len(trajectories["B"]["tokens"][0]["path"]) == 4
    histograms = json.loads((out / "cosine_similarity.json").read_text())["histograms"]
    assert len(histograms["A"]) == 3 and len(histograms["B"]) == 4
    readme = (out / "README.md").read_text()
    assert all(f"{stem}.png" in readme for stem in FIGURES) and "linmix analyze --checkpoint" in readme


def test_analyze_is_seeded(tiny_runs, tmp_path, capsys):
    summaries = []
    for name in ("one", "two"):
        assert run_cli(["analyze", "--checkpoint", tiny_runs["A"], "--out", tmp_path / name, "--tokens", 48,
                        "--quiet"], capsys)[0] == 0
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        summaries.append({k: v for k, v in summary.items() if k != "command"})
    assert summaries[0] == summaries[1]


def test_a_checkpoint_folder_inside_a_run_is_labelled_with_its_run(tiny_runs, tmp_path, capsys):
    step = sorted((tiny_runs["B"] / "checkpoints").glob("step-*"))[-1]
    out = tmp_path / "step"
    assert run_cli(["analyze", "--checkpoint", step, "--out", out, "--tokens", 32, "--quiet"], capsys)[0] == 0
    assert json.loads((out / "summary.json").read_text())["models"][0]["label"] == f"B/{step.name}"


def test_missing_checkpoint_is_one_line_exit_2(tmp_path, capsys):
    code, _, err = run_cli(["analyze", "--checkpoint", tmp_path / "nope", "--out", tmp_path / "o"], capsys)
    assert_one_line_error(code, err, "does not exist")
    assert not (tmp_path / "o").exists()


def test_missing_data_names_data_dir(tiny_runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["analyze", "--checkpoint", tiny_runs["A"], "--out", tmp_path / "o",
                            "--data-dir", tmp_path / "empty"], capsys)
    assert_one_line_error(code, err, "--data-dir")
    assert not (tmp_path / "o").exists()


def test_a_model_without_its_run_config_is_one_line(tmp_path, capsys):
    LanguageModel(20, d_model=16, layers="summation", max_len=16).save_pretrained(tmp_path / "bare")
    code, _, err = run_cli(["analyze", "--checkpoint", tmp_path / "bare", "--out", tmp_path / "o"], capsys)
    assert_one_line_error(code, err, "train_config.json")


def test_bad_token_counts_are_one_line(tiny_runs, tmp_path, capsys):
    code, _, err = run_cli(["analyze", "--checkpoint", tiny_runs["A"], "--out", tmp_path / "o", "--tokens", 1],
                           capsys)
    assert_one_line_error(code, err, "--tokens must be at least 2")
    with pytest.raises(SystemExit) as exc:
        main(["analyze", "--checkpoint", str(tiny_runs["A"]), "--tokens", "x"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and "invalid int value" in err
