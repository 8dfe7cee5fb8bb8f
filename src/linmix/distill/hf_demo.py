"""``linmix distill-hf``: linearize a pretrained Hugging Face causal LM into every variant of a config,
distil each (attention transfer, then recovery) and report perplexity, samples, decode memory and decode time.

Stages, each resumable, under ``out``:

* ``data/``: the training and validation splits tokenised with the teacher's tokenizer, once
  (``train.safetensors``, ``valid.safetensors``, ``data.json``).
* ``teacher.json``: the teacher's validation perplexity, greedy sample and KV-cache bytes.
* ``<variant>/``: the teacher converted by :func:`linmix.convert` (every attention layer becomes the
  variant's mixer, q/k/v/o copied where it has them, the original layers kept as teachers), measured as
  the plain swap; ``transfer/`` (:func:`linmix.distill.attention_transfer`), measured; ``recovery/``
  (:func:`linmix.distill.recover`, next-token loss mixed with KL to the original by ``kl_weight``,
  LoRA on the copied projections with ``lora_rank``), measured. ``evals.json`` keeps each measurement as
  it is made, ``model/`` the distilled mixers (``mixers.safetensors`` + ``conversion.json``, reloaded by
  :func:`linmix.distill.hf_load.load_distilled`), ``result.json`` marks the variant done.
* ``decode.json``: once every variant is done, the decode time against context length of the teacher
  (its KV cache) and of every variant reloaded from ``model/`` (its mixers' states), written model by
  model (:mod:`linmix.distill.hf_decode_time`).

A training stage resumes from its last saved step (:mod:`linmix.distill.stage`: safetensors and JSON,
never pickle); a measurement already in ``evals.json`` is not repeated; a finished variant is read, not
rebuilt, and the teacher is loaded only when something is left to do. ``plan.json`` holds the settings:
a rerun with other settings into the same ``out`` is an error naming the first one that differs, except
for those in :data:`MAY_CHANGE`; a setting missing from an older ``plan.json`` (one added since that run
was made) counts as its default value. The outputs (:mod:`linmix.distill.hf_report`) are rewritten at
the end of every run.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from linmix.convert import convert
from linmix.convert.teachers import converted_layers, drop_teachers
from linmix.data import load_lm_text
from linmix.distill.hf_config import HFDemoConfig, HFVariant, write_hf_config
from linmix.distill.hf_decode_time import decode_stage
from linmix.distill.hf_load import CONVERSION_FILE, MIXERS_FILE, decode, describe, encode, load_teacher
from linmix.distill.hf_measure import (greedy, kv_cache_bytes, measured_kv_bytes, perplexity, state_bytes,
                                       token_windows, train_batch)
from linmix.distill.hf_report import OUTPUTS, build_results, write_outputs
from linmix.distill.lora import lora_targets, merge_lora
from linmix.distill.recovery import KEPT, recover
from linmix.distill.transfer import attention_transfer, mixer_parameters, transfer_losses
from linmix.models.pretrained import write_json_atomic

PLAN, TEACHER, TIMES, EVALS, RESULT, CONFIG = ("plan.json", "teacher.json", "stage_times.json", "evals.json",
                                               "result.json", "config.toml")
#: settings no trained result or stored measurement depends on (a rerun may differ in them; the decode
#: stage keeps its own settings in decode.json and measures again when they differ)
MAY_CHANGE = ("out", "decode_lengths", "decode_tokens")


def default_out(config_path: str | os.PathLike | None) -> str:
    """``runs/distill-hf-<config folder name>`` (no timestamp: the same command resumes)."""
    name = Path(config_path).resolve().parent.name if config_path else "run"
    return os.path.join("runs", f"distill-hf-{name}")


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


class _Run:
    """What every stage shares: the settings, the folder, the log, stage times and the lazily loaded teacher."""

    def __init__(self, config: HFDemoConfig, out: Path, progress: bool, log: Callable[[str], None]) -> None:
        self.config, self.out, self.progress, self.log = config, out, progress, log
        self.times: dict[str, float] = _read(out / TIMES) or {}
        self._teacher: tuple[torch.nn.Module, Any] | None = None

    def teacher(self) -> tuple[torch.nn.Module, Any]:
        """``(model, tokenizer)``, loaded on first use."""
        if self._teacher is None:
            started = time.perf_counter()
            self._teacher = load_teacher(self.config.teacher, self.config.gguf_file)
            self.log(f"loaded teacher {self.config.teacher} in {time.perf_counter() - started:.0f} s")
        return self._teacher

    @contextmanager
    def stage(self, key: str, text: str):
        """Announce stage ``key`` and add its wall time to ``stage_times.json`` (also when interrupted)."""
        self.log(text)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - started
            write_json_atomic(self.out / TIMES, self.times)

    def evaluate(self, model: torch.nn.Module, windows: torch.Tensor, desc: str) -> dict[str, Any]:
        """Perplexity on ``windows`` and the greedy sample after the prompt."""
        _, tokenizer = self.teacher()
        record = perplexity(model, windows, self.progress, desc)
        prompt = encode(tokenizer, self.config.prompt).tolist()
        eos = getattr(tokenizer, "eos_token_id", None)
        record["sample"] = decode(tokenizer, greedy(model, prompt, self.config.sample_tokens, eos))
        self.log(f"  {desc}: perplexity {record['ppl']:.2f} ({record['tokens']:,} tokens, {record['seconds']:.0f} s); "
                 f"sample: {record['sample'][:80]!r}")
        return record


def _check_plan(out: Path, config: HFDemoConfig) -> None:
    """Write ``plan.json``, or check that an existing one holds these settings (a key it lacks is taken
    at its default: a setting added after that run was made)."""
    def as_plan(cfg: HFDemoConfig) -> dict[str, Any]:
        return {k: v for k, v in json.loads(json.dumps(cfg.to_dict())).items() if k not in MAY_CHANGE}

    plan = as_plan(config)
    old = _read(out / PLAN)
    if old is not None:
        old = {**as_plan(HFDemoConfig()), **old}
        for key in sorted(set(old) | set(plan)):
            if old.get(key) != plan.get(key):
                raise ValueError(f"{out} holds a run with {key}={old.get(key)!r}, this config has {plan.get(key)!r}; "
                                 "use another --out (or the same settings to resume)")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / PLAN, plan)


def load_ids(run: _Run, data_dir: str | os.PathLike | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training and validation ids, tokenised once into ``out/data``."""
    folder = run.out / "data"
    paths = {split: folder / f"{split}.safetensors" for split in ("train", "valid")}
    if all(p.is_file() for p in paths.values()) and (folder / "data.json").is_file():
        return load_file(str(paths["train"]))["ids"], load_file(str(paths["valid"]))["ids"]
    with run.stage("data", f"tokenising {run.config.dataset} with the teacher's tokenizer -> {folder}"):
        _, tokenizer = run.teacher()
        folder.mkdir(parents=True, exist_ok=True)
        ids, facts = {}, {"dataset": run.config.dataset, "tokenizer": type(tokenizer).__name__}
        for split, path in paths.items():
            text = load_lm_text(run.config.dataset, split, data_dir)
            ids[split] = encode(tokenizer, text)
            save_file({"ids": ids[split]}, str(path))
            facts[split] = {"chars": len(text), "tokens": ids[split].numel()}
        write_json_atomic(folder / "data.json", facts)
    return ids["train"], ids["valid"]


def teacher_stage(run: _Run, windows: torch.Tensor) -> dict[str, Any]:
    """The teacher's measurements (read from ``teacher.json`` when done)."""
    done = _read(run.out / TEACHER)
    if done is not None:
        run.log(f"teacher: measured earlier (perplexity {done['ppl']:.2f})")
        return done
    with run.stage("teacher", f"teacher {run.config.teacher}: perplexity, sample, KV cache"):
        model, _ = run.teacher()
        facts = describe(model)
        record = {**run.evaluate(model, windows, "teacher"), "facts": facts}
        lengths = run.config.memory_lengths
        record["memory"] = {"lengths": list(lengths), "bytes": [kv_cache_bytes(facts, n) for n in lengths],
                            "measured": {"tokens": windows.shape[1],
                                         "bytes": measured_kv_bytes(model, windows[:1]),
                                         "formula": kv_cache_bytes(facts, windows.shape[1])}}
    write_json_atomic(run.out / TEACHER, record)
    return record


def save_mixers(model: torch.nn.Module, folder: Path, variant: HFVariant, config: HFDemoConfig) -> int:
    """The distilled mixers' tensors (``mixers.safetensors``) and how to rebuild the model (``conversion.json``)."""
    layers = converted_layers(model)
    tensors = {n: p.detach().cpu().contiguous() for n, p in mixer_parameters(model, layers).items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / MIXERS_FILE))
    write_json_atomic(folder / CONVERSION_FILE, {
        "teacher": config.teacher, "gguf_file": config.gguf_file, "mixer": variant.mixer,
        "options": variant.options, "replaced": [layer.path for layer in layers],
        "tensors": len(tensors), "seed": config.seed})
    return sum(t.numel() for t in tensors.values())


def variant_stage(run: _Run, variant: HFVariant, train: torch.Tensor, windows: torch.Tensor,
                  index: str) -> dict[str, Any]:
    """Convert, measure, transfer, measure, recover, measure one variant (read back when done)."""
    cfg, folder = run.config, run.out / variant.name
    done = _read(folder / RESULT)
    if done is not None:
        run.log(f"{index} {variant.name}: finished earlier, read from {folder}")
        return done
    teacher, _ = run.teacher()
    model = copy.deepcopy(teacher)
    torch.manual_seed(cfg.seed)  # fresh mixer parameters are the same on every rerun
    model, report = convert(model, mixer=variant.mixer, keep_teacher=True, **variant.options)
    if variant.lora_rank and not lora_targets(model):
        raise ValueError(f"[variants.{variant.name}] lora_rank={variant.lora_rank}, but {variant.mixer} copied no "
                         "projections to put adapters on; set lora_rank = 0 for it")
    evals = _read(folder / EVALS) or {}

    def measured(key: str, desc: str) -> None:
        if key not in evals:
            evals[key] = run.evaluate(model, windows, desc)
            folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(folder / EVALS, evals)

    def batch(step: int) -> dict[str, torch.Tensor]:
        return train_batch(train, step, cfg.batch_size, cfg.seq_len, cfg.seed)

    with run.stage(f"{variant.name}/swap", f"{index} {variant.name}: {report.mixer} in {len(report.replaced)} layers, "
                   "plain swap"):
        measured("swap", f"{variant.name} swap")
        if "transfer_initial" not in evals:  # each layer's transfer loss before any training
            evals["transfer_initial"] = transfer_losses(model, batch(0), variant.loss)
            write_json_atomic(folder / EVALS, evals)
    with run.stage(f"{variant.name}/transfer", f"{index} {variant.name}: attention transfer, {cfg.transfer_steps} "
                   f"steps -> {folder / 'transfer'}"):
        final = attention_transfer(model, batch, cfg.transfer_steps, variant.transfer_lr, variant.loss,
                                   folder / "transfer", progress=run.progress, log_every=cfg.log_every,
                                   save_every=cfg.save_every, freeze_copied=variant.freeze_copied)
        evals.setdefault("transfer_final", final)
        measured("transfer", f"{variant.name} transfer")
    with run.stage(f"{variant.name}/recovery", f"{index} {variant.name}: recovery, {cfg.recovery_steps} steps "
                   f"-> {folder / 'recovery'}"):
        recovered = recover(model, lambda step: batch(cfg.transfer_steps + step), cfg.recovery_steps,
                            variant.recovery_lr, teacher=KEPT if variant.kl_weight > 0 else None,
                            kl_weight=variant.kl_weight, lora_rank=variant.lora_rank, out=folder / "recovery",
                            progress=run.progress, log_every=cfg.log_every, save_every=cfg.save_every)
        evals.setdefault("recovery_final", recovered)
        measured("recovery", f"{variant.name} recovery")
    merge_lora(model)
    drop_teachers(model)
    trained = save_mixers(model, folder / "model", variant, cfg)
    result = {"name": variant.name, "mixer": variant.mixer, "options": variant.options,
              "settings": {k: getattr(variant, k) for k in ("transfer_lr", "recovery_lr", "loss", "kl_weight",
                                                            "lora_rank", "freeze_copied")},
              "replaced": len(report.replaced), "kept": len(report.kept), "initialised": report.replaced[0].initialised,
              "params": {"before": report.params_before, "after": report.params_after, "mixers": trained},
              "evals": evals, "memory": state_bytes(model, cfg.memory_lengths, cfg.seed), "notes": report.notes}
    write_json_atomic(folder / RESULT, result)
    return result


def run_hf_demo(config: HFDemoConfig, out: str | os.PathLike | None = None, *, data_dir: str | None = None,
                progress: bool = True, copy_to: str | os.PathLike | None = None, command: str = "",
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) every stage of ``config`` into ``out`` (default ``config.out``) and write the
    outputs; with ``copy_to`` also copy them there with a ``command.txt``. Returns the results dict."""
    log = log or (lambda text: print(text, flush=True))
    variants = config.validate()  # everything checked before anything loads
    out = Path(out or config.out or default_out(None))
    _check_plan(out, config)
    started = time.perf_counter()
    run = _Run(config, out, progress, log)
    train, valid = load_ids(run, data_dir)
    windows = token_windows(valid, config.eval_len, config.eval_windows)
    teacher = teacher_stage(run, windows)
    results = [variant_stage(run, v, train, windows, f"[{i + 1}/{len(variants)}]") for i, v in enumerate(variants)]
    timing = decode_stage(run, [v.name for v in variants], valid)
    summary = build_results(config, teacher, results, run.times, out, time.perf_counter() - started, command,
                            decode=timing)
    write_outputs(summary, out)
    write_hf_config(config, out / CONFIG)
    if copy_to is not None:
        dest = Path(copy_to)
        dest.mkdir(parents=True, exist_ok=True)
        for name in OUTPUTS:
            if (out / name).is_file() and (out / name).resolve() != (dest / name).resolve():
                shutil.copy2(out / name, dest / name)
        threads = os.environ.get("OMP_NUM_THREADS")
        line = f"OMP_NUM_THREADS={threads} {command}" if threads else command
        (dest / "command.txt").write_text(f"{line}\n# wall time of all stages (summed over runs): "
                                          f"{sum(run.times.values()):.0f} s\n")
    log(f"results.md, results.json and results.png in {out}" + (f" (copied to {copy_to})" if copy_to else ""))
    return summary
