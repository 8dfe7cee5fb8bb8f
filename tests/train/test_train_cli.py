"""`linmix train` / `linmix sample` from the command line: error paths and an end-to-end sample."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from train_helpers import PYTHON, SUBPROCESS_ENV, TINY_LM

from linmix.cli import main


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tiny_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "lm"
    assert main(["train", "lm", "--data-dir", str(tiny_root), "--out", str(out), *TINY_LM, "--steps", "60",
                 "--eval-every", "30", "--lr", "1e-2"]) == 0
    return out


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("args, needle", [
    (["--steps", "-5"], "steps must be a positive integer"),
    (["--batch-size", "0"], "batch_size must be a positive integer"),
    (["--lr", "-1"], "lr must be a positive number"),
    (["--lr", "nan"], "lr must be a positive number"),
    (["--dropout", "1.5"], "dropout must lie in [0, 1)"),
    (["--steps", "5", "--epochs", "1"], "either steps or epochs"),
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--layers", "summation,wat"], "unknown mixer 'wat'"),
    (["--layers", "summation*0"], "repeat count"),
    (["--amp", "fp16", "--device", "cpu"], "fp16 needs CUDA"),
    (["--device", "tpu"], "device"),
    (["--block-size", "100000"], "shorter than one block"),
    (["--layers", "local_attention(windw=8)"], "mixer 'local_attention' does not take option(s) ['windw']; it accepts"),
    (["--data-dir", "/nonexistent/linmix-data"], "--data-dir /nonexistent/linmix-data does not exist"),
])
def test_bad_training_input_is_one_line_exit_2(args, needle, tiny_root, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["train", "lm", "--data-dir", tiny_root, "--out", out, "--quiet", *args], capsys)
    assert_one_line_error(code, err, needle)
    assert not out.exists()


def test_missing_data_files_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LINMIX_DATA", raising=False)
    monkeypatch.setenv("LINMIX_CACHE", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["train", "lm", "--data-dir", tmp_path / "empty", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "Traceback" not in err
    first, *hints = err.strip().splitlines()
    assert first.startswith("linmix train: error: dataset 'tinyshakespeare' is not in --data-dir")
    assert hints and "README" in hints[0]  # the hint lines are printed, indented, after the error line
    assert all(line.startswith("  ") for line in hints)


def test_out_dir_is_never_overwritten(tiny_run, tiny_root, tmp_path, capsys):
    before = tree_digest(tiny_run)
    code, _, err = run_cli(["train", "lm", "--data-dir", tiny_root, "--out", tiny_run, *TINY_LM], capsys)
    assert_one_line_error(code, err, "already holds a run; pass --resume")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, _, err = run_cli(["train", "lm", "--data-dir", tiny_root, "--out", foreign, *TINY_LM], capsys)
    assert_one_line_error(code, err, "not empty")
    code, _, err = run_cli(["train", "lm", "--out", foreign, "--resume"], capsys)
    assert_one_line_error(code, err, "not a linmix run directory")
    code, _, err = run_cli(["train", "lm", "--out", tiny_run, "--resume", "--d-model", "64"], capsys)
    assert_one_line_error(code, err, "d_model")
    assert (foreign / "notes.txt").read_text() == "mine" and sorted(foreign.iterdir()) == [foreign / "notes.txt"]
    assert tree_digest(tiny_run) == before


def test_argparse_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "lm", "--steps", "many"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "invalid int value" in err


@pytest.mark.parametrize("args, needle", [
    (["--checkpoint", "{missing}"], "does not exist"),
    (["--checkpoint", "{empty}"], "not a linmix checkpoint or run directory"),
    (["--checkpoint", "{run}", "--max-new-tokens", "-3"], "--max-new-tokens must be >= 0"),
    (["--checkpoint", "{run}", "--temperature", "-1"], "temperature"),
    (["--checkpoint", "{run}", "--top-p", "2"], "--top-p"),
    (["--checkpoint", "{run}", "--top-k", "0"], "--top-k"),
    (["--checkpoint", "{run}", "--prompt", ""], "prompt is empty"),
])
def test_bad_sample_input(args, needle, tiny_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "run": tiny_run}
    code, out, err = run_cli(["sample", *[a.format(**paths) for a in args]], capsys)
    assert_one_line_error(code, err, needle)
    assert out == ""  # nothing echoed before the error


def test_sample_needs_a_language_model(tiny_root, tmp_path, capsys):
    out = tmp_path / "clf"
    assert main(["train", "classify", "--data-dir", str(tiny_root), "--out", str(out), "--d-model", "16",
                 "--layers", "summation", "--max-len", "16", "--steps", "2", "--eval-every", "2",
                 "--vocab-size", "50", "--quiet"]) == 0
    capsys.readouterr()
    code, _, err = run_cli(["sample", "--checkpoint", out], capsys)
    assert_one_line_error(code, err, "not a LanguageModel")


def test_sample_streams_from_run_dir_and_checkpoint_dir(tiny_run, capsys):
    code, out, _ = run_cli(["sample", "--checkpoint", tiny_run, "--prompt", "ROMEO:", "--max-new-tokens", "100",
                            "--seed", "1"], capsys)
    assert code == 0 and out.startswith("ROMEO:")
    assert len(out) == len("ROMEO:") + 100 + 1  # char tokenizer: one character per token, then a newline
    # longer than the model's max_len (32): the sliding window keeps going
    ckpt = next((tiny_run / "checkpoints").glob("step-*"))
    code, again, _ = run_cli(["sample", "--checkpoint", ckpt, "--prompt", "ROMEO:", "--max-new-tokens", "100",
                              "--seed", "1"], capsys)
    assert code == 0 and again == out  # the final checkpoint holds the run's model: same seed, same text
    code, other, _ = run_cli(["sample", "--checkpoint", tiny_run, "--prompt", "ROMEO:", "--max-new-tokens", "100",
                              "--seed", "2"], capsys)
    assert other != out


def test_sample_subprocess_streams_and_learned_the_format(tiny_run):
    result = subprocess.run([PYTHON, "-m", "linmix.cli", "sample", "--checkpoint", str(tiny_run), "--prompt",
                             "KING:\n", "--max-new-tokens", "300", "--temperature", "0.5", "--no-prompt-echo"],
                            capture_output=True, text=True, timeout=120, env=SUBPROCESS_ENV)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert len(text) == 301
    assert text.count(" ") > 20  # words separated by spaces, as in the training text


def test_train_summary_is_printed(tiny_root, tmp_path, capsys):
    code, out, _ = run_cli(["train", "lm", "--data-dir", tiny_root, "--out", tmp_path / "r", *TINY_LM,
                            "--steps", "4", "--eval-every", "2"], capsys)
    assert code == 0
    assert out.startswith("completed: 4/4 steps") and "val_loss" in out and str(tmp_path / "r") in out
    cfg = json.loads((tmp_path / "r" / "train_config.json").read_text())
    assert cfg["run"]["steps"] == 4 and cfg["data"]["tokenizer"] == "char" and cfg["model"]["max_len"] == 32


@pytest.mark.parametrize("lr", ["1e30", "1e38"])  # NaN loss at step 2; an optimizer overflow at step 1
def test_diverged_run_exits_1_with_one_line(lr, tiny_root, tmp_path):
    result = subprocess.run([PYTHON, "-m", "linmix.cli", "train", "lm", "--data-dir", str(tiny_root), "--out",
                             str(tmp_path / "nan"), *TINY_LM, "--steps", "30", "--warmup", "0", "--lr", lr,
                             "--eval-every", "1", "--grad-clip", "0"], capture_output=True, text=True, timeout=120,
                            env=SUBPROCESS_ENV)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("linmix train: error: training diverged at step"), lines
