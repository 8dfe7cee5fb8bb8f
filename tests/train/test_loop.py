"""The training loop on tiny data: outputs, NaN stop, early stopping, every task, autocast."""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from linmix.config import TrainConfig
from linmix.train import EarlyStopping, TrainingDiverged, build_trainer, load_checkpoint, run_training, train_config


def lm_config(root, out, **kw) -> TrainConfig:
    base = dict(task="lm", dataset="tinyshakespeare", data_dir=str(root), out=str(out), d_model=32, n_heads=2,
                layers="summation,attention", max_len=32, batch_size=8, steps=40, warmup=5, eval_every=10,
                eval_batches=4, log_every=5, progress=False)
    return train_config(**(base | kw))


def test_lm_run_writes_everything(tiny_root, tmp_path):
    out = tmp_path / "run"
    summary = run_training(lm_config(tiny_root, out))
    names = {p.name for p in out.iterdir()}
    assert {"train_config.json", "config.json", "model.safetensors", "tokenizer_config.json", "metrics.jsonl",
            "summary.json", "loss_curve.png", "lr_curve.png", "checkpoints"} <= names
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "eval"]
    assert [r["step"] for r in train] == list(range(5, 41, 5))
    assert [r["step"] for r in evals] == [10, 20, 30, 40]
    assert all(r["tokens_per_s"] > 0 and r["lr"] > 0 for r in train)
    assert records[-1]["type"] == "final"
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["status"] == summary["status"] == "completed"
    for key in ("config", "seed", "versions", "machine", "wall_time_s", "parameters", "best", "final"):
        assert key in on_disk
    assert set(on_disk["versions"]) >= {"linmix", "torch", "python"}
    assert set(on_disk["machine"]) >= {"platform", "cpu_count", "device_name"}
    assert on_disk["final"]["val_loss"] < math.log(on_disk["vocab_size"])  # it learned something
    assert train[-1]["loss"] < train[0]["loss"]
    assert load_checkpoint(out).step == 40


class InfiniteGradient(torch.autograd.Function):
    """Adds 0 to the loss in the forward pass and sends an infinite gradient back to ``x``."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.sum() * 0

    @staticmethod
    def backward(ctx, grad):
        return torch.full(ctx.shape, float("inf"), dtype=grad.dtype)


def nan_loss(loss, model):
    return loss * float("nan")


def inf_gradient(loss, model):
    return loss + sum(InfiniteGradient.apply(p) for p in model.parameters())  # the loss stays finite


@pytest.mark.parametrize("poison, reason", [(nan_loss, "the training loss is nan"),
                                            (inf_gradient, "the gradient norm is inf")])
def test_divergence_stops_and_keeps_the_last_good_checkpoint(poison, reason, tiny_root, tmp_path):
    out = tmp_path / "run"
    trainer = build_trainer(lm_config(tiny_root, out, steps=20))
    real_loss = trainer.task.loss

    def poisoned(model, batch):
        loss = real_loss(model, batch)
        return poison(loss, model) if trainer.step >= 12 else loss

    trainer.task.loss = poisoned
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    message = str(info.value)
    assert f"diverged at step 13: {reason}" in message
    assert "The last good checkpoint (step 10" in message
    ckpt = load_checkpoint(out)
    assert ckpt.step == 10
    weights = load_file(str(ckpt.path / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())
    run_model = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(run_model[k], weights[k]) for k in weights)  # the run dir's model is the good one
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and "step 13" in summary["message"]


def test_early_stopping_tracker():
    es = EarlyStopping("val_loss", "min", patience=2)
    assert es.update({"val_loss": 3.0}, 10) and not es.should_stop
    assert not es.update({"val_loss": 3.5}, 20) and not es.should_stop
    assert es.update({"val_loss": 2.0}, 30) and es.bad == 0
    es.update({"val_loss": 2.1}, 40)
    es.update({"val_loss": float("nan")}, 50)
    assert es.should_stop and es.best == 2.0 and es.best_step == 30
    mx = EarlyStopping("val_acc", "max", patience=0)
    mx.update({"val_acc": 0.5}, 1)
    assert mx.update({"val_acc": 0.6}, 2) and not mx.should_stop


def test_trainer_stops_early_when_validation_stalls(tiny_root, tmp_path):
    out = tmp_path / "run"
    trainer = build_trainer(lm_config(tiny_root, out, steps=100, patience=2))
    values = iter([3.0, 2.0, 2.5, 2.6, 1.0, 1.0])
    trainer.evaluate = lambda limit: {"val_loss": next(values) if limit is not None else 2.0}
    summary = trainer.fit()
    assert summary["status"] == "early_stopped" and summary["steps_done"] == 40
    assert summary["best"]["best"] == 2.0 and summary["best"]["best_step"] == 20
    assert load_checkpoint(out).step == 40


def test_classify_task_end_to_end(tiny_root, tmp_path):
    cfg = train_config(task="classify", dataset="ag_news", data_dir=str(tiny_root), out=str(tmp_path / "c"),
                      d_model=32, layers="summation", max_len=32, batch_size=16, epochs=3, lr=3e-3, warmup=5,
                      eval_every=20, vocab_size=200, progress=False)
    summary = run_training(cfg)
    assert summary["total_steps"] == 3 * (400 // 16)
    assert summary["final"]["val_examples"] == 100
    assert summary["final"]["val_acc"] > 0.5  # 4 classes with topic words: well above chance
    assert summary["best"]["metric"] == "val_acc"


def test_multimodal_task_end_to_end(tiny_root, tmp_path):
    out = tmp_path / "m"
    cfg = train_config(task="multimodal", dataset="clothing_reviews", data_dir=str(tiny_root), out=str(out),
                      d_model=32, layers="summation", max_len=32, batch_size=16, steps=60, lr=3e-3, warmup=5,
                      eval_every=20, vocab_size=200, progress=False)
    summary = run_training(cfg)
    stats = json.loads((out / "numeric_stats.json").read_text())
    assert stats["numeric_fields"] == ["Age", "Positive Feedback Count", "Recommended IND"]
    assert len(stats["numeric_mean"]) == 3 and all(math.isfinite(v) for v in stats["numeric_mean"])
    final = summary["final"]
    assert {"val_rmse", "val_mae", "val_loss"} <= set(final)
    assert final["val_rmse"] < 1.2  # the mood word and Recommended IND give the rating away; std is ~1.4
    assert summary["best"]["metric"] == "val_rmse"


def test_bf16_autocast_on_cpu(tiny_root, tmp_path):
    summary = run_training(lm_config(tiny_root, tmp_path / "bf16", steps=6, eval_every=3, amp="bf16"))
    assert summary["status"] == "completed" and math.isfinite(summary["final"]["val_loss"])


def test_fp16_needs_cuda(tiny_root, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        run_training(lm_config(tiny_root, tmp_path / "fp16", amp="fp16", device="cpu"))
    assert not (tmp_path / "fp16").exists()


def test_qlearning_controller_runs_are_reproducible(tiny_root, tmp_path):
    def lrs(out):
        run_training(lm_config(tiny_root, out, steps=60, lr_controller="qlearning", log_every=1,
                               controller_options={"window": 4, "epsilon": 0.5}))
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [r["lr"] for r in rows if r["type"] == "train"]

    a, b = lrs(tmp_path / "a"), lrs(tmp_path / "b")
    assert a == b
    state = load_checkpoint(tmp_path / "a").state["controller"]
    # fed after the 5 warmup steps: 55 losses = 13 windows of 4, the first one the reference; 4 trends x 3 scales
    assert state["decisions"] == 12 and len(state["q"]) == 12


def test_adam_betas_and_bounded_final_evaluation_reach_the_trainer(tiny_root, tmp_path):
    cfg = lm_config(tiny_root, tmp_path / "b", beta1=0.8, beta2=0.99, final_eval_batches=2, steps=4,
                    eval_every=4).resolved()
    trainer = build_trainer(cfg)
    assert {g["betas"] for g in trainer.optimizer.param_groups} == {(0.8, 0.99)}
    summary = trainer.fit()
    assert summary["final"]["val_tokens"] == 2 * 8 * 32  # two batches of 8 windows of 32 tokens
    records = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["step_s"] > 0 for r in records if r["type"] == "train")


def test_loop_names_stay_importable_from_linmix_train_loop():
    from linmix.train import loop, loop_parts

    for name in ("EarlyStopping", "TrainingDiverged", "autocast_dtype"):
        assert getattr(loop, name) is getattr(loop_parts, name)
    assert loop.EarlyStopping is EarlyStopping and loop.TrainingDiverged is TrainingDiverged
