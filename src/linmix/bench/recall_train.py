"""The training side of ``linmix bench recall``: one run = one (model, d_model, T, kv, lr, seed, mlp).

A run builds a 2-layer :class:`~linmix.models.lm.LanguageModel` (``ffn_mult=0`` without the MLP), trains it
with AdamW on a fresh MQAR batch per step (linear warm-up, then cosine to 0 or constant), evaluates the
fixed validation set every ``eval_every`` steps, stops early once validation accuracy reaches the target,
and scores the fixed test set at the end. The loss and the accuracy only need the query positions, so the
output head runs on those rows alone (``model.encoder(ids)``, gather, ``model.head``): the ``[B, T, V]``
logits are never built.

Resume: every finished run is appended to a JSONL file (one object a line, flushed at once); a rerun reads
it back and skips every run whose :func:`run_key` is already there.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from linmix.bench.resume import append_record, read_records
from linmix.data.synthetic.mqar import IGNORE, MQARConfig, hashed_seed, make_mqar

#: the fields that identify a run (the resume key)
KEY_FIELDS = ("model", "d_model", "T", "kv", "lr", "seed", "mlp")
#: the config fields a finished run also has to match to be reused (its training setting)
SETTING_FIELDS = ("vocab_size", "power_a", "random_filler", "batch_size", "max_steps", "eval_every", "warmup_steps",
                  "schedule", "weight_decay", "grad_clip", "n_heads", "ffn_mult", "positional", "target_accuracy",
                  "val_examples", "test_examples")


def setting(cfg) -> dict:
    """The training setting of ``cfg`` (a run made under another one is not reused)."""
    return {k: getattr(cfg, k) for k in SETTING_FIELDS}


def run_key(record: dict) -> tuple:
    """``(model, d_model, T, kv, lr, seed, mlp)`` of a planned or finished run."""
    return tuple(float(record[k]) if k == "lr" else record[k] for k in KEY_FIELDS)


def load_done(path: Path | None, cfg=None) -> tuple[dict[tuple, dict], int]:
    """The finished runs of ``path`` by key, and how many lines were passed over (a torn last line, or a
    run made under another training setting than ``cfg``'s: those run again). No file: nothing done."""
    records, other = read_records(path)
    done = {}
    want = None if cfg is None else json.loads(json.dumps(setting(cfg)))
    for record in records:
        try:
            key = run_key(record)
        except (KeyError, TypeError, ValueError):
            other += 1
            continue
        if want is not None and record.get("setting") != want:
            other += 1
            continue
        done[key] = record
    return done, other


append_run = append_record  # one finished run, flushed at once


def generator_config(cfg, T: int, kv: int) -> MQARConfig:
    """The MQAR generator of one size under the bench config ``cfg``."""
    return MQARConfig(vocab_size=cfg.vocab_size, seq_len=T, num_kv=kv, power_a=cfg.power_a,
                      random_filler=cfg.random_filler)


def fixed_sets(cfg, T: int, kv: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation and test sets of one size (seeds hashed from the generator config)."""
    gen = generator_config(cfg, T, kv)
    return {"valid": make_mqar(gen, cfg.val_examples, hashed_seed(gen, "valid")),
            "test": make_mqar(gen, cfg.test_examples, hashed_seed(gen, "test"))}


def build_model(layers: str, cfg, d_model: int, T: int, mlp: bool, seed: int):
    """The seeded LM of one run."""
    from linmix.models.lm import LanguageModel

    torch.manual_seed(seed)
    return LanguageModel(cfg.vocab_size, d_model=d_model, layers=layers, max_len=T, n_heads=cfg.n_heads,
                         positional=cfg.positional, ffn_mult=cfg.ffn_mult if mlp else 0)


@torch.no_grad()
def state_bytes(model, T: int, device: torch.device) -> int | None:
    """Bytes of the decoding state after a length-``T`` prompt, summed over layers (None: no streaming)."""
    model.eval()
    ids = torch.randint(1, model.config.vocab_size, (1, T), device=device)
    try:
        _, states = model.encoder.prefill(ids)
    except NotImplementedError:
        return None
    return int(sum(s.nbytes() for s in states))


def learning_rate(step: int, peak: float, cfg) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine to 0 at ``max_steps`` (or constant)."""
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return peak
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))


def scored(model, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[N, V]`` at the N scored positions only, and their targets ``[N]``."""
    hidden = model.encoder(inputs)
    mask = targets != IGNORE
    return model.head(hidden[mask]), targets[mask]


@torch.no_grad()
def accuracy(model, data: tuple[torch.Tensor, torch.Tensor], device: torch.device, batch: int = 256) -> float:
    """Fraction of the scored positions of ``data`` predicted right (argmax), in eval mode."""
    was = model.training
    model.eval()
    right = total = 0
    inputs, targets = data
    for i in range(0, inputs.shape[0], batch):
        logits, y = scored(model, inputs[i:i + batch].to(device), targets[i:i + batch].to(device))
        right += int((logits.argmax(-1) == y).sum())
        total += y.numel()
    model.train(was)
    return right / total if total else float("nan")


def train_run(spec: dict, cfg, sets: dict, device: torch.device, on_step=None) -> dict:
    """Train one planned run (``spec``: :data:`KEY_FIELDS` and ``layers``); its finished record.

    ``on_step(step, val_accuracy)`` is called after every evaluation (progress display).
    """
    start = time.perf_counter()
    gen = generator_config(cfg, spec["T"], spec["kv"])
    model = build_model(spec["layers"], cfg, spec["d_model"], spec["T"], spec["mlp"], spec["seed"]).to(device)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=cfg.weight_decay, betas=(0.9, cfg.beta2))
    stream = hashed_seed(gen, f"train/seed={spec['seed']}")
    curve, reached, step, loss_value = [], None, 0, float("nan")
    for step in range(1, cfg.max_steps + 1):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step - 1, spec["lr"], cfg)
        inputs, targets = make_mqar(gen, cfg.batch_size, stream + step)
        logits, y = scored(model, inputs.to(device), targets.to(device))
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        loss_value = float(loss.detach())
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            val = accuracy(model, sets["valid"], device)
            curve.append([step, round(val, 4)])
            if on_step is not None:
                on_step(step, val)
            if val >= cfg.target_accuracy:
                reached = step
                break
    return {key: spec[key] for key in KEY_FIELDS} | {
        "layers": spec["layers"], "accuracy": accuracy(model, sets["test"], device),
        "val_accuracy": curve[-1][1] if curve else None, "steps": step, "steps_to_target": reached,
        "final_loss": loss_value, "params": params, "train_s": time.perf_counter() - start, "curve": curve,
        "setting": setting(cfg)}
