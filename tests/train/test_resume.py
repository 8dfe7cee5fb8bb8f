"""--resume: a killed run continues to the same final weights as an uninterrupted one (bitwise on CPU)."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from train_helpers import PYTHON, SUBPROCESS_ENV, TINY_LM
from safetensors.torch import load_file

from linmix.config import TrainConfig
from linmix.train import build_trainer, load_checkpoint, train_config
from linmix.train.reporting import read_metrics

pytestmark = pytest.mark.slow


def same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), f"{key} differs"


def train_records(run: Path) -> list[tuple[int, float, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["lr"]) for r in rows if r["type"] == "train"]


def latest_step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoints" / "latest.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def test_killed_subprocess_resumes_to_identical_weights(tiny_root, tmp_path):
    steps = 400

    def command(out: Path) -> list[str]:
        return [PYTHON, "-m", "linmix.cli", "train", "lm", "--data-dir", str(tiny_root), "--out", str(out), *TINY_LM,
                "--steps", str(steps), "--eval-every", "25", "--eval-batches", "2", "--seed", "3", "--dropout", "0.1"]

    env = SUBPROCESS_ENV
    full, killed = tmp_path / "full", tmp_path / "killed"
    victim = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while latest_step(killed) < 50 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {victim.stderr.read()}"
    at_kill = latest_step(killed)
    assert 50 <= at_kill < steps and not (killed / "summary.json").exists()

    subprocess.run(command(full), env=env, check=True, capture_output=True)
    resumed = subprocess.run(command(killed) + ["--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    same_weights(full, killed)
    assert train_records(full) == train_records(killed)  # same losses and LRs; no duplicated records
    assert json.loads((killed / "summary.json").read_text())["steps_done"] == steps


class Interrupted(Exception):
    pass


def test_in_process_interrupt_and_resume_with_qlearning_and_dropout(tiny_root, tmp_path):
    def config(out: Path) -> TrainConfig:
        return train_config(task="lm", dataset="tinyshakespeare", data_dir=str(tiny_root), out=str(out), d_model=32,
                           n_heads=2, layers="summation,attention", max_len=32, batch_size=8, steps=70, warmup=5,
                           eval_every=10, eval_batches=2, dropout=0.2, lr_controller="qlearning", seed=5,
                           controller_options={"window": 4, "epsilon": 0.5}, progress=False)

    build_trainer(config(tmp_path / "full")).fit()

    trainer = build_trainer(config(tmp_path / "cut"))
    real = trainer.task.train_batch

    def interrupt_at_43(step, device):
        if step == 43:
            raise Interrupted
        return real(step, device)

    trainer.task.train_batch = interrupt_at_43
    with pytest.raises(Interrupted):
        trainer.fit()
    assert load_checkpoint(tmp_path / "cut").step == 40
    torch.manual_seed(1234)  # whatever the process did in between must not matter
    resumed = build_trainer(train_config(out=str(tmp_path / "cut")), resume=True)
    # fed after the 5 warmup steps: 35 losses = 8 windows of 4 (the first one the reference of the first trend)
    assert resumed.step == 40 and resumed.controller.decisions == 7
    saved = load_checkpoint(tmp_path / "cut").state["controller"]
    assert resumed.controller.state_dict() == saved  # Q table, RNG, windows, baseline: exactly the checkpoint's
    assert resumed.controller.current_epsilon == 0.5 * 0.97 ** 7
    resumed.fit()
    same_weights(tmp_path / "full", tmp_path / "cut")
    assert train_records(tmp_path / "full") == train_records(tmp_path / "cut")
    decisions = {name: [r for r in read_metrics(tmp_path / name / "metrics.jsonl") if r["type"] == "lr_decision"]
                 for name in ("full", "cut")}
    assert decisions["full"] == decisions["cut"] and len(decisions["full"]) == (70 - 5) // 4 - 1
    assert len({r["step"] for r in decisions["cut"]}) == len(decisions["cut"])  # none logged twice


def test_resume_refuses_a_changed_config_and_a_missing_run(tiny_root, tmp_path):
    out = tmp_path / "run"
    cfg = train_config(task="lm", data_dir=str(tiny_root), out=str(out), d_model=16, n_heads=2, layers="summation",
                      max_len=16, batch_size=4, steps=5, warmup=1, eval_every=5, eval_batches=1, progress=False)
    build_trainer(cfg).fit()
    with pytest.raises(ValueError, match="d_model is 16; got 32"):
        build_trainer(train_config(out=str(out), d_model=32), resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        build_trainer(train_config(out=str(tmp_path / "nope")), resume=True)
    # mutable options (device, data dir) may change; a finished run resumes to the same summary
    again = build_trainer(train_config(out=str(out), device="cpu"), resume=True).fit()
    assert again["steps_done"] == 5 and again["status"] == "completed"
