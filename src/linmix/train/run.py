"""From a :class:`TrainConfig` to a trained run: data, tokenizer, model, run directory, :class:`Trainer`.

Library entry points (the CLI and ``linmix compare`` call these)::

    from linmix import TrainConfig
    from linmix.config import train_config
    from linmix.train import run_training, train_lm
    summary = run_training(train_config("lm", dataset="tinyshakespeare", layers="attention*4", steps=500,
                                        out="runs/attn"))
    summary = train_lm(layers="summation*4", steps=500, out="runs/sum")      # same, keyword style
    summary = run_training(train_config("lm", out="runs/attn"), resume=True)   # continue a killed run

Under ``torchrun`` the same calls train with DistributedDataParallel (see :mod:`linmix.train.distributed`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from linmix.data import (ClassificationBatches, MultimodalBatches, build_tokenizer, encode_corpus, load_classification,
                         load_lm_text, load_regression, load_tokenizer)
from linmix.data.tokenizers import Tokenizer
from linmix.models import build_model
from linmix.models.pretrained import write_json_atomic
from linmix.train.checkpoint import RUN_CONFIG, is_run_dir, latest_checkpoint, load_checkpoint
from linmix.config import RESUME_MUTABLE, SECTIONS, TrainConfig, train_config
from linmix.train.distributed import (DistContext, cleanup_distributed, init_distributed, resolve_device,
                                      run_on_main)
from linmix.train.loop import Trainer
from linmix.train.loop_parts import autocast_dtype
from linmix.train.tasks import ClassifyTask, LMTask, RegressionTask, Task

NUMERIC_STATS = "numeric_stats.json"


@dataclass
class Prepared:
    """Everything built for a run before training starts."""

    config: TrainConfig
    tokenizer: Tokenizer
    task: Task
    model: torch.nn.Module
    info: dict[str, Any]
    total_steps: int = 0


def default_out(config: TrainConfig) -> str:
    """``runs/<task>-<dataset>-<YYYYmmdd-HHMMSS>``."""
    return os.path.join("runs", f"{config.task}-{config.data.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")


def check_out_dir(out: str | os.PathLike, resume: bool) -> Path:
    """Refuse to overwrite anything: a fresh run needs a new or empty folder, ``resume`` needs a run folder."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a directory")
    if resume:
        if not path.is_dir():
            raise FileNotFoundError(f"nothing to resume: {path} does not exist")
        if not is_run_dir(path):
            raise ValueError(f"nothing to resume: {path} is not a linmix run directory (no {RUN_CONFIG})")
        return path
    if path.is_dir() and any(path.iterdir()):
        if is_run_dir(path):
            raise ValueError(f"{path} already holds a run; pass --resume to continue it, or choose another --out")
        raise ValueError(f"{path} exists and is not empty (and not a linmix run); choose another --out")
    return path


def given_fields(config: TrainConfig) -> dict[str, Any]:
    """``{"optim.lr": 0.003, ...}``: the fields of ``config`` that differ from a fresh config of its task."""
    values, defaults = config.to_dict(), TrainConfig(task=config.task).to_dict()
    return {f"{section}.{name}": value for section in SECTIONS for name, value in values[section].items()
            if value != defaults[section][name]}


def merge_resume_config(saved: TrainConfig, given: TrainConfig) -> TrainConfig:
    """The saved config with what ``given`` sets applied where it may change on resume (device, data_dir,
    progress, out); any other field ``given`` sets to a value other than the saved one is a ``ValueError``
    (a resumed run must compute exactly what the original would have)."""
    saved_values = saved.to_dict()
    allowed = {}
    for key, value in given_fields(given).items():
        if key in RESUME_MUTABLE:
            allowed[key] = value
            continue
        section, _, name = key.partition(".")
        current = saved_values[section][name] if name else saved_values[section]
        if value != current:
            raise ValueError(f"--resume continues the saved run, whose {key} is {current!r}; got {value!r}. "
                             "Drop the option or start a new run with another --out")
    return saved.with_overrides(allowed)


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The :class:`TrainConfig` saved in a run directory."""
    path = Path(run_dir) / RUN_CONFIG
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()), str(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_dir} is not a linmix run directory (no {RUN_CONFIG})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None


# --------------------------------------------------------------------------- building


def prepare(config: TrainConfig, ctx: DistContext | None = None, tokenizer: Tokenizer | None = None) -> Prepared:
    """Load the data, train (or reuse) the tokenizer, build the task and a freshly initialised model.

    ``config`` must be resolved. ``total_steps`` is ``steps``, or ``epochs`` times the batches per epoch.
    """
    ctx = ctx or DistContext()
    builders = {"lm": _prepare_lm, "classify": _prepare_classify, "multimodal": _prepare_multimodal}
    prepared = builders[config.task](config, ctx, tokenizer)
    spe = prepared.task.steps_per_epoch
    run = config.run
    prepared.total_steps = run.steps if run.steps is not None else max(1, math.ceil(run.epochs * spe))
    prepared.info["steps_per_epoch"] = spe
    return prepared


def _tokenizer(config: TrainConfig, texts: Any, ctx: DistContext, given: Tokenizer | None) -> Tokenizer:
    if given is not None:
        return given
    tok = run_on_main(lambda: build_tokenizer(config.data.tokenizer, texts, config.data.vocab_size), ctx)
    return _share_tokenizer(tok, ctx)


def _share_tokenizer(tok: Tokenizer | None, ctx: DistContext) -> Tokenizer:
    """Rank 0's tokenizer on every rank (sent as its saved files), so all ranks use the same vocabulary."""
    if not ctx.enabled:
        assert tok is not None
        return tok
    import torch.distributed as dist

    files: list[Any] = [None]
    if ctx.is_main:
        assert tok is not None
        with tempfile.TemporaryDirectory() as d:
            tok.save(d)
            files = [{p.name: p.read_bytes() for p in Path(d).iterdir()}]
    dist.broadcast_object_list(files, src=0)
    if ctx.is_main:
        return tok  # type: ignore[return-value]
    with tempfile.TemporaryDirectory() as d:
        for name, data in files[0].items():
            (Path(d) / name).write_bytes(data)
        return load_tokenizer(d)


def _broadcast(value: Any, ctx: DistContext) -> Any:
    if not ctx.enabled:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _init_seed(config: TrainConfig) -> None:
    seed = config.run.seed
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    import random

    random.seed(seed)


def _model(config: TrainConfig, **data_fields: Any) -> torch.nn.Module:
    """A freshly initialised model from ``config.model`` with the fields only the data knows filled in."""
    _init_seed(config)
    return build_model(dataclasses.replace(config.model, **data_fields))


def _prepare_lm(config: TrainConfig, ctx: DistContext, given: Tokenizer | None) -> Prepared:
    data, seed = config.data, config.run.seed
    train_text = load_lm_text(data.dataset, "train", data.data_dir, seed=seed)
    val_text = load_lm_text(data.dataset, "valid", data.data_dir, seed=seed)
    tok = _tokenizer(config, train_text, ctx, given)
    train_ids, val_ids = encode_corpus(tok, train_text), encode_corpus(tok, val_text)
    task = LMTask(train_ids, val_ids, config.model.max_len, data.batch_size, seed, ctx.rank, ctx.world_size)
    model = _model(config, vocab_size=tok.vocab_size)
    info = {"train_tokens": len(train_ids), "val_tokens": len(val_ids), "vocab_size": tok.vocab_size}
    return Prepared(config, tok, task, model, info)


def _text_batches(cls: type, columns: tuple, tok: Tokenizer, config: TrainConfig, ctx: DistContext,
                  train: bool) -> Any:
    return cls(*columns, tok, batch_size=config.data.batch_size, max_len=config.model.max_len,
               shuffle=True, seed=config.run.seed, rank=ctx.rank, world_size=ctx.world_size,
               drop_last=train, mode="pad" if train else "uneven")


def _prepare_classify(config: TrainConfig, ctx: DistContext, given: Tokenizer | None) -> Prepared:
    data, seed = config.data, config.run.seed
    train = load_classification(data.dataset, "train", data.data_dir, seed=seed)
    val = load_classification(data.dataset, "valid", data.data_dir, seed=seed)
    tok = _tokenizer(config, train.texts, ctx, given)
    train_b = _text_batches(ClassificationBatches, (train.texts, train.labels), tok, config, ctx, True)
    val_b = _text_batches(ClassificationBatches, (val.texts, val.labels), tok, config, ctx, False)
    task = ClassifyTask(train_b, val_b)
    model = _model(config, vocab_size=tok.vocab_size, num_classes=train.num_classes)
    info = {"train_examples": len(train), "val_examples": len(val), "num_classes": train.num_classes,
            "label_names": train.label_names, "vocab_size": tok.vocab_size,
            "truncated_train_texts": train_b.num_truncated}
    return Prepared(config, tok, task, model, info)


def numeric_statistics(numeric: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """Train-split statistics for standardisation (NaN-aware; a constant column gets std 1)."""
    mean = np.nanmean(numeric, axis=0)
    std = np.nanstd(numeric, axis=0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    t_std = float(np.std(targets)) or 1.0
    return {"numeric_mean": mean.astype(float).tolist(), "numeric_std": std.astype(float).tolist(),
            "target_mean": float(np.mean(targets)), "target_std": t_std}


def standardize(numeric: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """``(x - mean) / std`` with the saved statistics; missing values (NaN) become 0 (the train mean)."""
    z = (numeric - np.asarray(stats["numeric_mean"], np.float32)) / np.asarray(stats["numeric_std"], np.float32)
    return np.nan_to_num(z, nan=0.0).astype(np.float32)


def _prepare_multimodal(config: TrainConfig, ctx: DistContext, given: Tokenizer | None) -> Prepared:
    """Validation is the test split unless ``data.valid_fraction`` carves a seeded slice of train for it."""
    data, seed = config.data, config.run.seed
    train, val = (load_regression(data.dataset, split, data.data_dir, target=data.target, seed=seed,
                                  drop_fields=data.drop_features, valid_fraction=data.valid_fraction)
                  for split in ("train", "valid"))
    stats = numeric_statistics(train.numeric, train.targets)
    stats.update(numeric_fields=train.numeric_fields, target=train.target_field)
    tok = _tokenizer(config, train.texts, ctx, given)
    cols_t = (train.texts, standardize(train.numeric, stats), train.targets)
    cols_v = (val.texts, standardize(val.numeric, stats), val.targets)
    train_b = _text_batches(MultimodalBatches, cols_t, tok, config, ctx, True)
    val_b = _text_batches(MultimodalBatches, cols_v, tok, config, ctx, False)
    task = RegressionTask(train_b, val_b, stats["target_mean"], stats["target_std"])
    model = _model(config, vocab_size=tok.vocab_size, n_numeric=len(train.numeric_fields))
    info = {"train_examples": len(train), "val_examples": len(val), "numeric_stats": stats,
            "vocab_size": tok.vocab_size}
    return Prepared(config, tok, task, model, info)


# --------------------------------------------------------------------------- running


def build_trainer(config: TrainConfig, *, resume: bool = False, ctx: DistContext | None = None,
                  device: torch.device | None = None) -> Trainer:
    """Validate, load data, build the model and set up the run directory; returns a ready :class:`Trainer`.

    ``resume=True`` continues the run in ``config.run.out`` from its latest checkpoint: the saved config is
    authoritative, and what ``config`` sets may change only what does not change the result (see
    :func:`merge_resume_config`). Nothing is written before every check passed.
    """
    ctx = ctx or DistContext()
    if resume:
        if not config.run.out:
            raise ValueError("--resume needs --out pointing at the run directory to continue")
        check_out_dir(config.run.out, resume=True)
        config = merge_resume_config(load_run_config(config.run.out), config)
    cfg = config.resolved()
    if not cfg.run.out:
        cfg.run.out = _broadcast(default_out(cfg), ctx)  # rank 0's timestamp everywhere
    out = check_out_dir(cfg.run.out, resume)
    device = device or resolve_device(cfg.run.device, ctx.local_rank)
    autocast_dtype(cfg.run.amp, device)  # fp16 without CUDA etc.: fail before anything is loaded or written
    tokenizer = load_tokenizer(out) if resume else None
    prepared = prepare(cfg, ctx, tokenizer)
    checkpoint = None
    if resume:
        found = latest_checkpoint(out)
        checkpoint = load_checkpoint(found) if found is not None else None

    def setup_run_dir() -> None:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            write_json_atomic(out / RUN_CONFIG, cfg.to_dict())
            prepared.tokenizer.save(out)
            if "numeric_stats" in prepared.info:
                write_json_atomic(out / NUMERIC_STATS, prepared.info["numeric_stats"])

    run_on_main(setup_run_dir, ctx)
    return Trainer(prepared.model, prepared.task, cfg, out, device, ctx, tokenizer=prepared.tokenizer,
                   checkpoint=checkpoint, info={"run_dir": str(out), **prepared.info},
                   total_steps=prepared.total_steps)


def run_training(config: TrainConfig, *, resume: bool = False) -> dict[str, Any]:
    """Train as ``config`` says (joining a ``torchrun`` process group when launched by one); returns the
    summary dict that is also written to ``<out>/summary.json``. See :func:`build_trainer` for ``resume``."""
    device = resolve_device(config.run.device or "auto", int(os.environ.get("LOCAL_RANK", "0")))
    ctx = init_distributed(device)
    try:
        trainer = build_trainer(config, resume=resume, ctx=ctx, device=device)
        return trainer.fit()
    finally:
        cleanup_distributed()


def train_lm(*, resume: bool = False, **options: Any) -> dict[str, Any]:
    """``run_training(train_config("lm", **options))``: bare field names, e.g. ``layers=``, ``lr=``."""
    return run_training(train_config("lm", **options), resume=resume)


def train_classifier(*, resume: bool = False, **options: Any) -> dict[str, Any]:
    """``run_training(train_config("classify", **options))``."""
    return run_training(train_config("classify", **options), resume=resume)


def train_multimodal(*, resume: bool = False, **options: Any) -> dict[str, Any]:
    """``run_training(train_config("multimodal", **options))``."""
    return run_training(train_config("multimodal", **options), resume=resume)
