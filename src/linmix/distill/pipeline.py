"""``linmix distill`` for linmix's own language models: load a ``linmix train lm`` run, convert it, run
attention transfer and recovery on the run's own dataset and tokenizer, and report the validation loss of
the teacher, the plain swap, the transferred and the recovered model.

The data is found the way ``linmix sample`` / ``linmix analyze`` find it (:mod:`linmix.analyze.collect`):
the run's ``train_config.json`` names the dataset (``dataset`` overrides it), the saved tokenizer encodes
it, and the run's block size cuts it into windows (:class:`linmix.train.tasks.LMTask`, seeded by the
run's seed: step ``s`` of transfer reads training batch ``s``, step ``s`` of recovery batch
``transfer_steps + s``). Validation is the run's validation split, ``eval_batches`` batches of it in a
fixed order, the same for all four models. The teacher for a KL term is the converted model with its
kept teachers put back (:func:`linmix.distill.recovery.teachers_in_place`), i.e. the original model.

``out`` holds ``distill.json`` (the settings; a rerun must match them, except for more recovery steps),
``transfer/`` and ``recovery/`` (each stage's log, figure and resumable state), ``model/`` (the result,
adapters merged and teachers dropped, with its tokenizer: ``linmix sample out/model`` works),
``summary.json`` and ``README.md``. Running the same command again resumes where it stopped.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from linmix.analyze.collect import load_for_analysis, validation_text
from linmix.convert import convert
from linmix.convert.teachers import drop_teachers
from linmix.data import encode_corpus, load_lm_text
from linmix.distill.lora import merge_lora
from linmix.distill.recovery import KEPT, recover
from linmix.distill.report import readme_text
from linmix.distill.transfer import attention_transfer, transfer_losses
from linmix.mixers.registry import check_mixer_name
from linmix.models.pretrained import write_json_atomic
from linmix.train.tasks import LMTask

PLAN = "distill.json"
#: settings a rerun may change without invalidating what is already done
MAY_CHANGE = ("recovery_steps", "eval_batches", "device", "command")


def training_text(config: Any, data_dir: str | os.PathLike | None) -> str:
    """The run's training text (``data_dir``, else the run's own data root when it still exists, else
    ``$LINMIX_DATA`` and the cache)."""
    root: Any = data_dir
    if root is None and config.data.data_dir and Path(config.data.data_dir).expanduser().is_dir():
        root = config.data.data_dir
    try:
        return load_lm_text(config.data.dataset, "train", root, seed=config.run.seed)
    except FileNotFoundError:
        raise FileNotFoundError(f"the training data (dataset {config.data.dataset!r}) was not found; pass "
                                "--data-dir with the data root that holds it") from None


@torch.no_grad()
def validation_loss(model: torch.nn.Module, task: LMTask, limit: int | None, device: str) -> tuple[float, int]:
    """``(mean next-token loss, tokens)`` on ``limit`` validation batches (all when None), in eval mode."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    try:
        for batch in task.eval_batches(limit, torch.device(device)):
            for key, value in task.eval_sums(model, batch).items():
                sums[key] = sums.get(key, 0.0) + value
    finally:
        model.train(was_training)
    return task.finalize(sums)["val_loss"], int(sums["count"])


def _check_plan(out: Path, plan: dict[str, Any]) -> None:
    """Write ``distill.json``, or check an existing one matches ``plan``."""
    path = out / PLAN
    if path.is_file():
        old = json.loads(path.read_text())
        for key in sorted(set(old) | set(plan)):
            if key not in MAY_CHANGE and old.get(key) != plan.get(key):
                raise ValueError(f"{out} holds a distillation with {key}={old.get(key)!r}, this run asks for "
                                 f"{plan.get(key)!r}; use another --out (or the same settings to resume)")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, plan)


def distill_run(checkpoint: str | os.PathLike, mixer: str, out: str | os.PathLike, keep: Any = None,
                dataset: str | None = None, data_dir: str | os.PathLike | None = None, transfer_steps: int = 200,
                recovery_steps: int = 200, transfer_lr: float = 1e-3, recovery_lr: float = 1e-4,
                loss: str = "mse", kl_weight: float = 0.0, lora_rank: int = 0, batch_size: int | None = None,
                eval_batches: int | None = 20, log_every: int = 10, save_every: int = 100, seed: int = 0,
                device: str = "cpu", progress: bool = True, command: str = "") -> dict[str, Any]:
    """Distil the language model of ``checkpoint`` (a run directory or checkpoint) into ``mixer`` (see the
    module doc); returns the summary also written to ``out/summary.json``."""
    check_mixer_name(mixer)
    out = Path(out)
    model, _, run_dir, config, tokenizer = load_for_analysis(checkpoint, device)
    if config.task != "lm":
        raise ValueError(f"{run_dir} is a {config.task} run; linmix distill takes language models (linmix train lm)")
    if dataset:
        config.data.dataset = dataset
    plan = {"checkpoint": str(checkpoint), "mixer": mixer, "keep": keep, "dataset": config.data.dataset,
            "transfer_steps": transfer_steps, "recovery_steps": recovery_steps, "transfer_lr": transfer_lr,
            "recovery_lr": recovery_lr, "loss": loss, "kl_weight": kl_weight, "lora_rank": lora_rank,
            "batch_size": batch_size, "seed": seed, "eval_batches": eval_batches, "device": device,
            "command": command}
    _check_plan(out, plan)
    encoder = model.encoder
    train_ids = encode_corpus(tokenizer, training_text(config, data_dir))
    val_ids = encode_corpus(tokenizer, validation_text(config, data_dir, run_dir))
    top = int(torch.cat([train_ids, val_ids]).max()) if train_ids.numel() + val_ids.numel() else 0
    if top >= encoder.vocab_size:
        raise ValueError(f"the tokenizer of {run_dir} gives ids up to {top} but the model has {encoder.vocab_size}")
    block = min(config.model.max_len or encoder.max_len, encoder.max_len)
    task = LMTask(train_ids, val_ids, block, batch_size or config.data.batch_size or 8, seed=config.run.seed)
    val: dict[str, float] = {}
    val["teacher"], tokens = validation_loss(model, task, eval_batches, device)

    torch.manual_seed(seed)  # the new mixers' fresh parameters are the same on every rerun
    calibration = task.train_batch(0, torch.device(device))[0] if keep == "auto" else None
    model, report = convert(model, mixer=mixer, keep=keep, calibration=calibration, keep_teacher=True)
    val["swap"], _ = validation_loss(model, task, eval_batches, device)

    def transfer_batch(step: int) -> torch.Tensor:
        return task.train_batch(step, torch.device(device))[0]

    initial = transfer_losses(model, transfer_batch(0), loss)
    final = attention_transfer(model, transfer_batch, transfer_steps, transfer_lr, loss, out / "transfer",
                               progress=progress, log_every=log_every, save_every=save_every)
    val["transfer"], _ = validation_loss(model, task, eval_batches, device)
    recovered = recover(model, lambda step: task.train_batch(transfer_steps + step, torch.device(device)),
                        recovery_steps, recovery_lr, teacher=KEPT if kl_weight > 0 else None, kl_weight=kl_weight,
                        lora_rank=lora_rank, out=out / "recovery", progress=progress, log_every=log_every,
                        save_every=save_every)
    val["recovery"], _ = validation_loss(model, task, eval_batches, device)

    merge_lora(model)
    drop_teachers(model)
    model.save_pretrained(out / "model")
    tokenizer.save(out / "model")
    summary = {"checkpoint": str(checkpoint), "run": str(run_dir), "mixer": mixer, "keep": keep,
               "layers": model.config.layers, "dataset": config.data.dataset, "tokenizer": config.data.tokenizer,
               "replaced": report.replaced_paths, "kept": list(report.kept), "val_loss": val, "val_tokens": tokens,
               "params": {"before": report.params_before, "after": report.params_after},
               "transfer": {"steps": transfer_steps, "lr": transfer_lr, "loss": loss, "initial": initial,
                            "final": final},
               "recovery": {"steps": recovery_steps, "lr": recovery_lr, "kl_weight": kl_weight,
                            "lora_rank": lora_rank, "final": recovered},
               "notes": report.notes, "command": command}
    write_json_atomic(out / "summary.json", summary)
    tmp = out / "README.md.tmp"
    tmp.write_text(readme_text(summary))
    os.replace(tmp, out / "README.md")
    return summary
