"""``linmix distill-demo``: train an attention LM, convert it to other mixers, distil each conversion, and
set every result beside the same architecture trained from scratch; one config file, one command.

Stages, in order, each in its own folder under ``out``:

* ``teacher/``: the attention LM, an ordinary ``linmix train lm`` run of ``config.teacher``.
* ``<candidate>/distill/``: ``linmix distill`` of the teacher into the candidate's mixer
  (:func:`linmix.distill.pipeline.distill_run`): validation loss of the plain swap, after attention
  transfer and after recovery.
* ``<candidate>/scratch/``: the converted layer spec (e.g. ``summation*3,attention``) trained from a
  fresh initialisation with the teacher's data, batch, optimiser and schedule for the teacher's steps +
  transfer + recovery steps, i.e. as many optimizer steps as the distilled model has had in all.

Every stage resumes: a training run continues from its latest checkpoint and a finished one is read,
not retrained (:func:`linmix.train.schedule_compare.train_one`); a distillation resumes its stages from
their saved state (:mod:`linmix.distill.stage`), and one whose ``summary.json`` was written with the same
settings is read. A stage whose folder holds other settings is an error, never overwritten. So running
the same command again after an interruption continues where it stopped, and after completion only
rewrites the outputs: ``results.md``, ``results.csv``, ``results.json``, ``results.png``
(:mod:`linmix.distill.demo_report`), ``config.toml`` (the settings used) and ``stage_times.json``
(the wall seconds each stage has taken, summed over interrupted runs).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from linmix.config import TrainConfig
from linmix.distill.demo_config import DemoCandidate, DemoConfig, write_demo_config
from linmix.distill.demo_report import OUTPUTS, build_results, write_outputs
from linmix.models.pretrained import write_json_atomic
from linmix.train.checkpoint import is_run_dir, latest_checkpoint
from linmix.train.loop import SUMMARY

TEACHER = "teacher"
DISTILL = "distill"
SCRATCH = "scratch"
TIMES = "stage_times.json"
CONFIG = "config.toml"


def default_out(config_path: str | os.PathLike | None) -> str:
    """``runs/distill-demo-<config folder name>`` (no timestamp: the same command resumes)."""
    name = Path(config_path).resolve().parent.name if config_path else "run"
    return os.path.join("runs", f"distill-demo-{name}")


class _Stages:
    """Numbered progress lines and the per-stage wall times (``stage_times.json``, summed over runs)."""

    def __init__(self, out: Path, total: int, log: Callable[[str], None]) -> None:
        self.out, self.total, self.log, self.done = out, total, log, 0
        path = out / TIMES
        self.times: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def line(self, text: str) -> None:
        self.log(f"[{self.done}/{self.total}] {text}")

    @contextmanager
    def stage(self, key: str, text: str):
        """Announce stage ``key``; time it while it runs (kept even when it is interrupted)."""
        self.done += 1
        self.line(text)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - started
            self.out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.out / TIMES, self.times)


def _train(config: TrainConfig, run_dir: Path, stages: _Stages, key: str, what: str) -> dict[str, Any]:
    """Train (or read back, or continue) one run, with a progress line before and after."""
    from linmix.train.schedule_compare import train_one

    steps = config.resolved().run.steps
    if is_run_dir(run_dir) and (run_dir / SUMMARY).is_file():
        stages.done += 1
        stages.line(f"{what}: finished earlier, read from {run_dir}")
        return train_one(config, run_dir)  # checks that the saved config is this one
    found = latest_checkpoint(run_dir) if is_run_dir(run_dir) else None
    start = f"resuming at step {int(found.name.split('-')[-1])} of {steps}" if found else f"training {steps} steps"
    with stages.stage(key, f"{what}: {start} -> {run_dir}"):
        summary = train_one(config, run_dir)
    final = (summary.get("final") or {}).get("val_loss")
    stages.line(f"{what}: {summary['status']}, {summary['steps_done']} steps, val loss "
                f"{final if final is None else f'{final:.4f}'}, {summary['wall_time_s']:.0f} s")
    return summary


def _distill_kwargs(config: DemoConfig, cand: DemoCandidate, teacher: TrainConfig) -> dict[str, Any]:
    """The settings :func:`distill_run` records in ``distill.json`` (the names it saves them under)."""
    return {"mixer": cand.mixer, "keep": cand.keep, "transfer_steps": config.transfer_steps,
            "recovery_steps": config.recovery_steps, "transfer_lr": config.transfer_lr,
            "recovery_lr": config.recovery_lr, "loss": config.loss, "kl_weight": config.kl_weight,
            "lora_rank": config.lora_rank, "batch_size": None, "seed": config.seed,
            "eval_batches": teacher.run.final_eval_batches}


def finished_distillation(out: Path, checkpoint: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a distillation in ``out`` that finished with exactly ``settings``, else None."""
    plan_path, summary_path = out / "distill.json", out / "summary.json"
    if not (plan_path.is_file() and summary_path.is_file()):
        return None
    plan = json.loads(plan_path.read_text())
    wanted = {"checkpoint": str(checkpoint), **json.loads(json.dumps(settings))}  # keep=(...) as JSON has it
    if any(plan.get(key) != value for key, value in wanted.items()):
        return None  # distill_run resumes it (more recovery steps) or names the setting that differs
    return json.loads(summary_path.read_text())


def _distill(config: DemoConfig, cand: DemoCandidate, teacher: TrainConfig, teacher_dir: Path, out: Path,
             stages: _Stages, progress: bool, command: str) -> dict[str, Any]:
    from linmix.distill.pipeline import distill_run
    from linmix.train.distributed import resolve_device

    settings = _distill_kwargs(config, cand, teacher)
    what = f"distill {cand.text}"
    done = finished_distillation(out, teacher_dir, settings)
    if done is not None:
        stages.done += 1
        stages.line(f"{what}: finished earlier, read from {out}")
        return done
    doing = "resuming" if (out / "transfer").is_dir() else "converting"
    with stages.stage(f"{cand.slug}/{DISTILL}", f"{what}: {doing}, transfer {config.transfer_steps} + recovery "
                      f"{config.recovery_steps} steps -> {out}"):
        summary = distill_run(teacher_dir, out=out, data_dir=teacher.data.data_dir,
                              device=str(resolve_device(teacher.run.device)), progress=progress,
                              command=command, **settings)
    val = summary["val_loss"]
    stages.line(f"{what}: {summary['layers']}, val loss swap {val['swap']:.4f}, transfer {val['transfer']:.4f}, "
                f"recovery {val['recovery']:.4f}")
    return summary


def scratch_config(teacher: TrainConfig, layers: str, steps: int, run_dir: Path) -> TrainConfig:
    """The teacher's config with only the layers, the step count and the folder changed."""
    return teacher.with_overrides({"model.layers": layers, "run.steps": steps, "run.out": str(run_dir)})


def run_demo(config: DemoConfig, out: str | os.PathLike | None = None, *, data_dir: str | None = None,
             device: str | None = None, progress: bool = True, copy_to: str | os.PathLike | None = None,
             command: str = "", log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) every stage of ``config`` and write the outputs (see the module doc) to ``out``
    (default ``config.out``); with ``copy_to`` also copy ``results.*`` there with a ``command.txt``.
    ``data_dir``, ``device`` and ``progress`` change nothing in the results and may differ between runs.
    Returns the ``results.json`` dict."""
    log = log or (lambda text: print(text, flush=True))
    overrides = {"run.progress": progress}
    if data_dir is not None:
        overrides["data.data_dir"] = str(data_dir)
    if device is not None:
        overrides["run.device"] = device
    recorded, config = config, dataclasses.replace(config, teacher=config.teacher.with_overrides(overrides))
    teacher, candidates = config.validate()  # everything checked before anything trains
    out = Path(out or config.out or default_out(None))
    given = config.teacher.with_overrides({"run.out": str(out / TEACHER)})
    started = time.perf_counter()
    stages = _Stages(out, 1 + 2 * len(candidates), log)
    teacher_dir = out / TEACHER
    teacher_summary = _train(given, teacher_dir, stages, TEACHER, f"teacher {teacher.model.layers}")
    if teacher_summary["status"] == "diverged":
        raise ValueError(f"the teacher diverged ({teacher_summary['message']}); change [teacher.optim] and use "
                         "another out")
    total = teacher.run.steps + config.stage_steps
    entries = []
    for cand in candidates:
        folder = out / cand.slug
        distilled = _distill(config, cand, teacher, teacher_dir, folder / DISTILL, stages, progress, command)
        run_dir = folder / SCRATCH
        scratch = _train(scratch_config(config.teacher, distilled["layers"], total, run_dir), run_dir, stages,
                         f"{cand.slug}/{SCRATCH}", f"from scratch {distilled['layers']}")
        entries.append({"candidate": cand, "distill": distilled, "scratch": scratch, "folder": folder})
    results = build_results(recorded, teacher, teacher_summary, entries, stages.times, out,
                            time.perf_counter() - started, command)
    write_outputs(results, out)
    write_demo_config(recorded, out / CONFIG)  # as given: without this machine's data folder or device
    if copy_to is not None:
        copy_results(out, Path(copy_to), command, results["wall_s"]["stages_total"])
    log(f"results.md, results.csv, results.json and results.png in {out}"
        + (f" (copied to {copy_to})" if copy_to is not None else ""))
    return results


def copy_results(out: Path, dest: Path, command: str, stage_s: float) -> None:
    """Copy the outputs to ``dest`` (e.g. the config's folder) and write ``dest/command.txt``: the command
    (with ``OMP_NUM_THREADS`` when set: it changes every timing) and the stages' wall time in all."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        source, target = out / name, dest / name
        if source.is_file() and source.resolve() != target.resolve():
            shutil.copy2(source, target)
    threads = os.environ.get("OMP_NUM_THREADS")
    line = f"OMP_NUM_THREADS={threads} {command}" if threads else command
    (dest / "command.txt").write_text(f"{line}\n# wall time of all stages (summed over runs): {stage_s:.0f} s\n")
