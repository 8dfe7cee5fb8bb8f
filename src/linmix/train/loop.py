"""The one training loop for every task: :class:`Trainer`.

AdamW (weight decay on matrices only), warmup + cosine/constant LR (times the optional Q-learning
controller's scale; it sees the losses after warmup, and its decisions go to metrics.jsonl), gradient
clipping, autocast (bf16 on CPU/CUDA, fp16 + GradScaler on CUDA), periodic evaluation with early stopping,
atomic checkpoints, NaN/inf detection, DDP. Rank 0 alone writes files.
The batch of step ``s`` depends only on ``(seed, s, rank)`` (see :mod:`linmix.train.tasks`), and every
other piece of state is in the checkpoint, so a resumed run reaches the same weights as an uninterrupted
one (bitwise on CPU).
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from linmix.train import reporting
from linmix.train.checkpoint import (Checkpoint, check_finite, restore_rng_state, save_checkpoint,
                                     unflatten_optimizer_state)
from linmix.config import TrainConfig
from linmix.train.distributed import DistContext, all_reduce_sum, params_in_sync
from linmix.train.loop_parts import EarlyStopping, ThroughputWindow, TrainingDiverged, autocast_dtype, param_groups
from linmix.train.qlearning import QLearningLRController
from linmix.train.schedules import LRSchedule
from linmix.train.tasks import Task

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
PLOT = "loss_curve.png"
LR_PLOT = "lr_curve.png"

__all__ = ["EarlyStopping", "Trainer", "TrainingDiverged", "autocast_dtype"]


class Trainer:
    """Trains ``model`` on ``task`` as ``config`` says; :meth:`fit` returns the summary dict.

    ``config`` must be resolved; ``total_steps`` defaults to ``config.run.steps``. ``run_dir`` (rank 0)
    receives metrics, checkpoints, the summary and the plots (loss_curve.png, lr_curve.png); ``None``
    trains without writing anything.
    ``checkpoint`` (from :func:`~linmix.train.checkpoint.load_checkpoint`) continues a previous run exactly.
    Setting ``keep_best`` before :meth:`fit` keeps a copy of the weights of the best evaluation so far in
    ``best_state`` (memory, not disk: a caller that tests the selected model, e.g. ``linmix compare
    multimodal``, loads it afterwards).
    """

    def __init__(self, model: torch.nn.Module, task: Task, config: TrainConfig, run_dir: str | Path | None,
                 device: torch.device, ctx: DistContext | None = None, tokenizer: Any = None,
                 checkpoint: Checkpoint | None = None, info: dict[str, Any] | None = None,
                 total_steps: int | None = None) -> None:
        if total_steps is None:
            if config.run.steps is None:
                raise ValueError("Trainer needs total_steps or config.run.steps")
            total_steps = config.run.steps
        self.config, self.task, self.device = config, task, device
        self.total_steps = int(total_steps)
        self.ctx = ctx or DistContext()
        self.run_dir = Path(run_dir) if run_dir is not None and self.ctx.is_main else None
        self.tokenizer, self.info = tokenizer, dict(info or {})
        dtype = torch.float64 if config.run.dtype == "float64" else torch.float32
        self.model = model.to(device=device, dtype=dtype)
        self.ddp: torch.nn.Module = self.model
        if self.ctx.enabled:
            self.ddp = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, config.optim.weight_decay), lr=config.optim.lr,
                                           betas=(config.optim.beta1, config.optim.beta2))
        self.schedule = LRSchedule(config.optim.schedule, config.optim.lr, config.optim.warmup, self.total_steps,
                                   config.optim.min_lr_ratio)
        self.controller = (QLearningLRController.from_options(config.optim.controller_options, config.run.seed)
                           if config.optim.lr_controller == "qlearning" else None)
        self.autocast_dtype = autocast_dtype(config.run.amp, device)
        self.scaler = torch.amp.GradScaler("cuda") if config.run.amp == "fp16" else None
        self.stopper = EarlyStopping(task.monitor, task.mode, config.run.patience)
        self.step = 0
        self.wall_before = 0.0
        self.tokens_seen = 0
        self.last_checkpoint: Path | None = None
        self.last_checkpoint_step: int | None = None
        self.history: dict[str, list[tuple]] = reporting.empty_history()
        self.keep_best = False
        self.best_state: dict[str, torch.Tensor] | None = None
        if checkpoint is not None:
            self._restore(checkpoint)
        elif self.run_dir is not None and (self.run_dir / METRICS).exists():
            reporting.truncate_metrics(self.run_dir / METRICS, 0)  # resumed before the first checkpoint

    # ------------------------------------------------------------------ state

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def lr_at(self, step: int) -> float:
        scale = self.controller.scale if self.controller is not None else 1.0
        return self.schedule(step) * scale

    def _state(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "schedule": self.schedule.state_dict(),
            "data": {**self.task.position(self.step), "seed": self.config.run.seed},
            "controller": self.controller.state_dict() if self.controller is not None else None,
            "early_stopping": self.stopper.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "world_size": self.ctx.world_size,
            "wall_time_s": self.wall_before + (time.perf_counter() - self._t0),
            "tokens_seen": self.tokens_seen,
        }

    def _restore(self, ckpt: Checkpoint) -> None:
        state = ckpt.state
        if state["world_size"] != self.ctx.world_size:
            raise ValueError(f"{ckpt.path} was written by a {state['world_size']}-process run; resume it with "
                             f"the same number of processes (this is {self.ctx.world_size})")
        saved_spe = state["data"]["steps_per_epoch"]
        if saved_spe != self.task.steps_per_epoch:
            raise ValueError(f"the data changed since {ckpt.path} was written ({saved_spe} batches per epoch "
                             f"then, {self.task.steps_per_epoch} now); resume needs the same dataset")
        from safetensors.torch import load_model

        load_model(self.model, str(ckpt.path / "model.safetensors"), strict=True, device=str(self.device))
        self.optimizer.load_state_dict(unflatten_optimizer_state(ckpt.optimizer_tensors, state["optimizer"]))
        if self.controller is not None and state.get("controller"):
            self.controller.load_state_dict(state["controller"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.stopper.load_state_dict(state["early_stopping"])
        self.step = ckpt.step
        self.wall_before = float(state.get("wall_time_s", 0.0))
        self.tokens_seen = int(state.get("tokens_seen", 0))
        self.last_checkpoint, self.last_checkpoint_step = ckpt.path, ckpt.step
        restore_rng_state(ckpt.rng_tensors, state["rng"])
        if self.run_dir is not None:
            self.history = reporting.truncate_metrics(self.run_dir / METRICS, ckpt.step)

    # ------------------------------------------------------------------ loop

    def fit(self) -> dict[str, Any]:
        """Train to ``total_steps`` (or early stop / divergence); returns the summary (also in summary.json)."""
        self._t0 = time.perf_counter()
        self._window = ThroughputWindow()
        status, message = "completed", ""
        self._bar = reporting.progress_bar(self.total_steps, self.step,
                                           enabled=self.ctx.is_main and self.config.run.progress)
        self.ddp.train()
        try:
            while self.step < self.total_steps:
                stop = self._train_step()
                if stop:
                    status = "early_stopped"
                    message = (f"early stop at step {self.step}: {self.stopper.monitor} did not improve for "
                               f"{self.config.run.patience} evaluations (best {self.stopper.best:.4f} at step "
                               f"{self.stopper.best_step})")
                    break
        except TrainingDiverged as err:
            self._bar.close()
            self._finish("diverged", str(err), final_metrics=None)
            raise
        self._bar.close()
        final = self.evaluate(self.config.run.final_eval_batches)
        self._log({"type": "final", "step": self.step, **final})
        if self.run_dir is not None:
            self.model.save_pretrained(self.run_dir)  # type: ignore[attr-defined]
        return self._finish(status, message, final)

    def _train_step(self) -> bool:
        """One optimizer step, then logging / evaluation / checkpoint as due; True = stop early."""
        cfg, step = self.config.run, self.step
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.task.train_batch(step, self.device)
        with self._autocast():
            loss = self.task.loss(self.ddp, batch)
        # the mean over ranks: what is logged, what the controller sees, and the same NaN verdict everywhere
        global_loss = float(all_reduce_sum(loss.detach().double().cpu().reshape(1), self.ctx)[0]) / self.ctx.world_size
        if not math.isfinite(global_loss):
            self._diverged(step, f"the training loss is {global_loss}")
        grad_norm = self._backward_and_step(loss, step)
        self.step = step + 1
        tokens = self.task.tokens(batch) * self.ctx.world_size
        self.tokens_seen += tokens
        if self.controller is not None and step >= self.config.optim.warmup:  # warmup is the schedule's alone
            decision = self.controller.observe(global_loss)
            if decision is not None:
                self._log_decision(decision.to_dict())
        self._window.add(global_loss, tokens)
        if self.step % cfg.log_every == 0 or self.step == self.total_steps:
            self._log_train(lr, grad_norm)
        self._bar.update(1)
        stop = False
        paused = time.perf_counter()
        if self.step % cfg.eval_every == 0 or self.step == self.total_steps:
            metrics = self.evaluate(cfg.eval_batches)
            improved = self.stopper.update(metrics, self.step)
            if improved and self.keep_best:
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self._log({"type": "eval", "step": self.step, **metrics, "best": improved})
            self.history["val"].append((self.step, metrics["val_loss"]))
            if self.ctx.is_main and cfg.progress:
                self._bar.write(reporting.eval_line(self.step, metrics, improved))
            stop = self.stopper.should_stop
        if self.step % cfg.checkpoint_every == 0 or self.step == self.total_steps or stop:
            self.save_checkpoint()
        self._window.exclude(time.perf_counter() - paused)  # throughput counts training steps only
        return stop

    def _log_train(self, lr: float, grad_norm: float) -> None:
        now = time.perf_counter()
        mean_loss, tps, step_s = self._window.flush(now)
        self._log({"type": "train", "step": self.step, "loss": mean_loss, "lr": lr, "grad_norm": grad_norm,
                   "tokens_per_s": tps, "step_s": step_s, "epoch": self.step / self.task.steps_per_epoch,
                   "elapsed_s": self.wall_before + now - self._t0})
        self.history["train"].append((self.step, mean_loss))
        self.history["lr"].append((self.step, lr))
        self._bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}", refresh=False)

    def _log_decision(self, decision: dict[str, Any]) -> None:
        """A controller decision, with the LR it sets for the next step (``lr``), into metrics.jsonl."""
        lr = self.lr_at(self.step)
        self._log({"type": "lr_decision", "step": self.step, **decision, "lr": lr})
        self.history["decisions"].append((self.step, lr, decision["factor"], decision["explored"]))

    def _backward_and_step(self, loss: torch.Tensor, step: int) -> float:
        clip = self.config.optim.grad_clip if self.config.optim.grad_clip > 0 else float("inf")
        self.optimizer.zero_grad(set_to_none=True)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
            self.scaler.step(self.optimizer)  # skips the step itself when the scaled gradients overflowed
            self.scaler.update()
            return float(norm)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
        if not torch.isfinite(norm):
            self._diverged(step, f"the gradient norm is {float(norm)}")
        try:
            self.optimizer.step()
        except RuntimeError as err:  # e.g. an absurd LR: "value cannot be converted to type float without overflow"
            if "overflow" not in str(err):
                raise
            self._diverged(step, f"the optimizer step overflowed ({err})")
        return float(norm)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    @torch.no_grad()
    def evaluate(self, limit: int | None) -> dict[str, float]:
        """Validation metrics over ``limit`` batches per rank (``None`` = the whole split), summed over ranks."""
        self.model.eval()
        sums: dict[str, float] = {}
        try:
            for batch in self.task.eval_batches(limit, self.device):
                with self._autocast():
                    for key, value in self.task.eval_sums(self.model, batch).items():
                        sums[key] = sums.get(key, 0.0) + value
        finally:
            self.ddp.train()
        keys = sorted(self.task.sum_keys)
        totals = all_reduce_sum(torch.tensor([sums.get(k, 0.0) for k in keys], dtype=torch.float64), self.ctx)
        return self.task.finalize({k: float(v) for k, v in zip(keys, totals)})

    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes a checkpoint of the current step (and refreshes the run dir's model)."""
        try:
            check_finite(self.model)  # on every rank, so that all of them stop together
        except FloatingPointError as err:
            self._diverged(self.step - 1, f"the weights hold NaN/inf ({err})")
        if self.run_dir is None:
            return None
        path = save_checkpoint(self.run_dir, self.step, self.model, self.optimizer, self._state(),
                               tokenizer=self.tokenizer)
        self.model.save_pretrained(self.run_dir)  # type: ignore[attr-defined]
        self.last_checkpoint, self.last_checkpoint_step = path, self.step
        return path

    # ------------------------------------------------------------------ reporting

    def _diverged(self, step: int, what: str) -> None:
        if self.last_checkpoint is not None:
            kept = (f"The last good checkpoint (step {self.last_checkpoint_step}, {self.last_checkpoint}) was kept "
                    "and the run directory's model is that one")
        else:
            kept = "No checkpoint had been written yet"
        raise TrainingDiverged(f"training diverged at step {step + 1}: {what}; stopped. {kept}. "
                               "Lower --lr (or --grad-clip) and start a new run.")

    def _log(self, record: dict[str, Any]) -> None:
        if self.run_dir is not None:
            with open(self.run_dir / METRICS, "a") as f:
                f.write(json.dumps(record, allow_nan=True) + "\n")

    def _finish(self, status: str, message: str, final_metrics: dict[str, float] | None) -> dict[str, Any]:
        wall = self.wall_before + time.perf_counter() - self._t0
        summary = reporting.build_summary(
            config=self.config, status=status, message=message, steps_done=self.step, total_steps=self.total_steps,
            steps_per_epoch=self.task.steps_per_epoch, wall_time_s=wall, parameters=self.num_parameters,
            best=self.stopper.state_dict() | {"metric": self.stopper.monitor, "mode": self.stopper.mode},
            final=final_metrics, tokens_seen=self.tokens_seen, device=self.device, world_size=self.ctx.world_size,
            last_checkpoint=str(self.last_checkpoint) if self.last_checkpoint else None,
            lr_scale=self.controller.scale if self.controller is not None else None,
            extra={**self.info, "ranks_in_sync": params_in_sync(self.model, self.ctx)})
        if self.run_dir is not None:
            reporting.write_summary(self.run_dir / SUMMARY, summary)
            reporting.plot_losses(self.history, self.run_dir / PLOT, title=self.config.name)
            reporting.plot_lr(self.history, self.run_dir / LR_PLOT, title=self.config.name)
        return summary
