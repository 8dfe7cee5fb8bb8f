"""``linmix compare``: train several layer specs on the same data, budget and seeds; one honest table.

Every candidate gets the same dataset, tokenizer, step count, batch size, seeds and LR grid; its ``d_model``
is chosen so its parameter count lies within 10% of the baseline's (the table shows the counts). When an LR
grid is given, every candidate sweeps the whole grid and the best LR of each is reported, so no candidate
gets tuning the others did not. Multimodal comparisons (text + numeric regression) add fusions, a ridge
reference and test-split scores: see :mod:`linmix.compare.multimodal`.
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any

from linmix.compare import multimodal
from linmix.compare.candidates import Candidate
from linmix.compare.equal_time import add_equal_time
from linmix.compare.plots import plot_curves
from linmix.compare.records import clear_unfinished, finished_record, save_record, without_configs
from linmix.compare.sizing import count_params, size_to_budget, within_budget
from linmix.compare.table import aggregate, write_grid, write_table
from linmix.config import COMPARE_DEFAULTS, CompareConfig, TrainConfig
from linmix.models import build_model
from linmix.models.pretrained import write_json_atomic
from linmix.models.spec import parse_layers

TASKS = ("lm", "classify", "multimodal")
#: metrics reported per task, the validation metric that picks each candidate's LR, and whether lower is better
METRICS = {"lm": (["val_loss", "val_ppl", "val_acc"], "val_loss", "min"),
           "classify": (["val_acc", "val_loss"], "val_acc", "max"),
           "multimodal": (multimodal.TEST_METRICS, "val_rmse", "min")}
#: which evaluation the table reports: an LM's final one (whole split, after the schedule has ended), a
#: classifier's best one (the summation papers report best validation accuracy over epochs), a regressor's
#: test-split scores at its best validation evaluation
REPORTED = {"lm": "final", "classify": "best", "multimodal": "test"}
#: what the speed-up compares: training tokens/s, or (multimodal, whose ridge row has no tokens) train seconds
SPEED = {"lm": "tokens_per_s", "classify": "tokens_per_s", "multimodal": "train_s"}


def resolve_compare(config: CompareConfig) -> CompareConfig:
    """A copy with the compare defaults (:data:`~linmix.config.COMPARE_DEFAULTS`) and the task defaults
    filled in, the candidates and the baseline checked; ``ValueError`` names the first bad value."""
    task = config.task
    if task not in TASKS:
        raise ValueError(f"unknown compare task {task!r}; use one of {', '.join(TASKS)}")
    c = dataclasses.replace(config, candidates=list(config.candidates), lrs=list(config.lrs))
    defaults = COMPARE_DEFAULTS[task]
    c.candidates = c.candidates or list(defaults["candidates"])
    run = c.base.run
    given = [n for n, v in (("steps", run.steps), ("epochs", run.epochs), ("time_budget_s", c.time_budget_s))
             if v is not None]
    if len(given) > 1:
        raise ValueError(f"give one of steps, epochs and time_budget_s, not {' and '.join(given)}")
    fill = {}
    for key, value in defaults["overrides"].items():
        section, name = key.split(".")
        if getattr(getattr(c.base, section), name) is None and not (name == "steps" and given):
            fill[key] = value
    if c.time_budget_s is not None:
        if not c.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be a positive number of seconds, got {c.time_budget_s}")
        fill["run.steps"] = c.probe_steps  # a placeholder: each candidate's steps come from its probe
    c.base = c.base.with_overrides(fill).resolved()
    c.seeds = defaults.get("seeds", 1) if c.seeds is None else c.seeds
    if c.seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {c.seeds}")
    cands = [Candidate.parse(t) for t in c.candidates]
    names = [cand.name for cand in cands]
    if len(set(names)) != len(names):
        raise ValueError(f"candidates must differ; got {names}")
    odd = [cand.name for cand in cands if cand.fusion or cand.is_ridge]
    if odd and task != "multimodal":
        raise ValueError(f"candidate {odd[0]!r}: '+FUSION' and 'ridge' are for linmix compare multimodal")
    nets = [cand for cand in cands if not cand.is_ridge]
    if c.baseline is None:
        pure = [cand.name for cand in nets if set(parse_layers(cand.layers)) == {"attention"}]
        c.baseline = pure[0] if pure else (nets[0].name if nets else names[0])
    if c.baseline not in names:
        raise ValueError(f"baseline {c.baseline!r} is not one of the candidates {names}")
    if c.baseline == "ridge":
        raise ValueError("the baseline must be a network: ridge has no d_model to size the others to")
    c.out = c.out or f"runs/compare-{task}-{c.base.data.dataset}"
    return c


def _slug(text: str) -> str:
    """A candidate name as a folder name: runs of anything but letters and digits become one dash."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def _model_builder(cfg: CompareConfig, cand: Candidate, vocab_size: int, num_classes: int,
                   n_numeric: int | None = None):
    model = dataclasses.replace(cfg.base.model, layers=cand.layers, arch=cand.arch, vocab_size=vocab_size,
                                num_classes=num_classes or None, n_numeric=n_numeric,
                                fusion=cand.fusion or cfg.base.model.fusion)
    return lambda d: build_model(dataclasses.replace(model, d_model=d))


def plan_sizes(cfg: CompareConfig, vocab_size: int, num_classes: int = 0,
               n_numeric: int | None = None) -> dict[str, tuple[int, int]]:
    """``{candidate: (d_model, params)}``: the baseline at the base ``d_model``, the other networks sized to
    match it (``ridge`` has no size to plan)."""
    cands = {c.name: c for c in map(Candidate.parse, cfg.candidates) if not c.is_ridge}
    d_model = cfg.base.model.d_model
    target = count_params(_model_builder(cfg, cands[cfg.baseline], vocab_size, num_classes, n_numeric)(d_model))
    sizes = {cfg.baseline: (d_model, target)}
    for name, cand in cands.items():
        if name == cfg.baseline:
            continue
        build = _model_builder(cfg, cand, vocab_size, num_classes, n_numeric)
        if cfg.match_params:
            d, p = size_to_budget(build, target, multiple=2 * cfg.base.model.n_heads)
            if not within_budget(p, target):
                raise ValueError(f"{name} cannot be sized within 10% of the baseline's {target:,} parameters "
                                 f"(closest: d_model={d}, {p:,}); pick another d_model")
        else:
            d, p = d_model, count_params(build(d_model))
        sizes[name] = (d, p)
    return {name: sizes[name] for name in cands}


def _data_sizes(cfg: CompareConfig) -> tuple[int, int, int | None]:
    """Build the shared tokenizer once to learn the vocabulary size (and the class or numeric input count);
    a bad dataset, feature or split option fails here, before anything trains."""
    from linmix.data import build_tokenizer, load_classification, load_lm_text

    data = cfg.base.data
    if cfg.task == "lm":
        text = load_lm_text(data.dataset, "train", data.data_dir)
        return build_tokenizer(data.tokenizer, text, data.vocab_size).vocab_size, 0, None
    if cfg.task == "multimodal":
        rows = multimodal.load_split(cfg.base, "train")
        return build_tokenizer(data.tokenizer, rows.texts, data.vocab_size).vocab_size, 0, len(rows.numeric_fields)
    rows = load_classification(data.dataset, "train", data.data_dir)
    return build_tokenizer(data.tokenizer, rows.texts, data.vocab_size).vocab_size, rows.num_classes, None


def _train_config(cfg: CompareConfig, cand: Candidate, d_model: int, seed: int, lr: float | None, out: Path,
                  **override: Any) -> TrainConfig:
    """The base config for one run of one candidate (``override``: dotted keys, e.g. ``"run.steps"``)."""
    values = {"model.layers": cand.layers, "model.arch": cand.arch, "model.d_model": d_model, "run.seed": seed,
              "run.out": str(out), **({"optim.lr": lr} if lr is not None else {}),
              **({"model.fusion": cand.fusion} if cand.fusion else {}), **override}
    return cfg.base.with_overrides(values).resolved()


def steps_for_budget(cfg: CompareConfig, cand: Candidate, d_model: int, lr: float | None, out: Path) -> int:
    """Training steps that fit ``cfg.time_budget_s`` for this candidate: a short probe run (same data, model,
    batch and optimizer) measures the median seconds per step, and the budget is divided by it. The real run
    then has a fixed step count and an ordinary schedule, so it stays exactly reproducible. The count is kept
    in ``out/steps.json``, so a resumed comparison reuses the one its finished runs were trained with."""
    from linmix.train import run_training

    if (out / "steps.json").is_file():
        return int(json.loads((out / "steps.json").read_text())["steps"])
    clear_unfinished(out)
    n = max(cfg.probe_steps, 4)
    run_training(_train_config(cfg, cand, d_model, 0, lr, out, **{
        "run.steps": n, "run.epochs": None, "run.eval_every": n, "run.log_every": 1, "run.eval_batches": 1,
        "run.final_eval_batches": 1, "optim.warmup": 0, "run.progress": False}))
    rows = _metric_rows(out)
    times = sorted(r["step_s"] for r in rows if r.get("type") == "train" and r["step"] > 2)
    steps = max(1, int(cfg.time_budget_s / times[len(times) // 2]))
    write_json_atomic(out / "steps.json", {"steps": steps, "time_budget_s": cfg.time_budget_s})
    return steps


def _metric_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The run's ``metrics.jsonl`` records (none if the run never logged)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _val_curve(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    rows = _metric_rows(run_dir)
    return [(r["step"], r[metric]) for r in rows if r.get("type") == "eval" and metric in r]


def _loss_by_training_time(run_dir: Path) -> list[tuple[float, float]]:
    """(cumulative training seconds, window-mean training loss) per logged window; evaluation time excluded."""
    rows = _metric_rows(run_dir)
    points, seconds, last_step = [], 0.0, 0
    for r in sorted((r for r in rows if r.get("type") == "train" and r.get("step_s")), key=lambda r: r["step"]):
        seconds += r["step_s"] * (r["step"] - last_step)
        last_step = r["step"]
        points.append((seconds, r["loss"]))
    return points


def _median_logged(run_dir: Path, key: str, fallback: float | None) -> float | None:
    """Median of ``key`` over the logged training windows (evaluation time excluded)."""
    values = sorted(r[key] for r in _metric_rows(run_dir) if r.get("type") == "train" and r.get(key))
    return values[len(values) // 2] if values else fallback


def _run_one(cfg: CompareConfig, cand: Candidate, d_model: int, seed: int, lr: float | None, run_dir: Path,
             override: dict[str, Any]) -> dict[str, Any]:
    """One run's table record: read from its ``record.json`` when it finished earlier, else trained now."""
    from linmix.train import run_training

    config = _train_config(cfg, cand, d_model, seed, lr, run_dir, **override)
    record = finished_record(run_dir, config, f"{cand.name} (seed {seed}, lr {config.optim.lr:g})")
    if record is not None:
        return without_configs([record])[0]
    clear_unfinished(run_dir)
    summary = (multimodal.train_and_test if cfg.task == "multimodal" else run_training)(config)
    record = run_record(cfg, cand.name, seed, d_model, run_dir, summary)
    save_record(run_dir, record, config)
    return record


def run_record(cfg: CompareConfig, candidate: str, seed: int, d_model: int, run_dir: Path,
               summary: dict[str, Any]) -> dict[str, Any]:
    """One finished training run as a table record: size, speed, the reported (best, final or test) metrics
    and the validation metric that picks the LR."""
    metrics, monitor, _ = METRICS[cfg.task]
    final = summary.get("final") or {}
    reported = REPORTED[cfg.task]
    best = (summary["best"].get("best_metrics") or final) if reported == "best" else final
    if reported == "test":
        stats = summary["numeric_stats"]
        best = {**summary["test"], monitor: summary["best"]["best"], "numeric_fields": stats["numeric_fields"],
                "target_mean": stats["target_mean"], "target_std": stats["target_std"]}
    step_s = _median_logged(run_dir, "step_s", None)
    epoch_steps = (summary["steps_done"] / summary["epochs_done"]
                   if cfg.task == "classify" and summary.get("epochs_done") else None)
    return {"candidate": candidate, "seed": seed, "lr": summary["config"]["optim"]["lr"], "d_model": d_model,
            "params": summary["parameters"],
            "tokens_per_s": _median_logged(run_dir, "tokens_per_s", summary["tokens_per_s"]),
            "s_per_epoch": step_s * epoch_steps if step_s and epoch_steps else None,
            "train_s": step_s * summary["steps_done"] if step_s else None,
            "wall_s": summary["wall_time_s"], "status": summary["status"], "run_dir": str(run_dir),
            "steps": summary["steps_done"], "total_steps": summary["total_steps"],
            **{m: best.get(m) for m in metrics},
            **{f"final_{m}": final.get(m) for m in metrics}, **(best if reported == "test" else {})}


def run_compare(config: CompareConfig, resume: bool = False) -> dict[str, Any]:
    """Train every candidate x seed (x LR) and write the table, the per-run records and the curves.

    Each finished run leaves ``record.json`` (:mod:`linmix.compare.records`): ``resume`` reads those and trains
    the rest, so an interrupted comparison loses at most the run in progress (without it a non-empty ``out``
    is an error). Returns ``{"rows": [...], "runs": [...], "markdown": str, "out": str}``."""
    cfg = resolve_compare(config)
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise ValueError(f"{out} exists and is not empty; choose another --out, or --resume to continue it")
    metrics, monitor, mode = METRICS[cfg.task]
    cands = [Candidate.parse(t) for t in cfg.candidates]
    sizes = plan_sizes(cfg, *_data_sizes(cfg))
    lrs = cfg.lrs or [None]
    runs: list[dict[str, Any]] = []
    curves: dict[str, list[tuple[int, float]]] = {}
    by_time: dict[str, list[tuple[float, float]]] = {}
    grid_runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    for cand in cands:
        if cand.is_ridge:
            runs += [multimodal.ridge_run(cfg, seed, out / "ridge" / f"seed{seed}") for seed in range(cfg.seeds)]
            continue
        d_model, _ = sizes[cand.name]
        override = {}
        if cfg.time_budget_s is not None:
            override = {"run.steps": steps_for_budget(cfg, cand, d_model, lrs[0], out / "probe" / _slug(cand.name))}
        for seed in range(cfg.seeds):
            best_run = None
            for lr in lrs:
                run_dir = out / _slug(cand.name) / (f"seed{seed}" + (f"-lr{lr:g}" if lr is not None else ""))
                record = _run_one(cfg, cand, d_model, seed, lr, run_dir, override)
                grid_runs.append(record)
                score = record[monitor]
                if best_run is None or (score is not None and (
                        best_run[monitor] is None or (score < best_run[monitor] if mode == "min"
                                                      else score > best_run[monitor]))):
                    best_run = record
            runs.append(best_run)
            label = f"{cand.name} (seed {seed})" if cfg.seeds > 1 else cand.name
            curves[label] = _val_curve(Path(best_run["run_dir"]), monitor)
            by_time[label] = _loss_by_training_time(Path(best_run["run_dir"]))
    if cfg.task == "lm":
        at_time = add_equal_time(runs, cfg.baseline, monitor)
        metrics = metrics + [at_time] if at_time else metrics
    rows = aggregate(runs, metrics, cfg.baseline, speed=SPEED[cfg.task])
    header = _header(cfg, time.perf_counter() - started, runs)
    if cfg.task == "multimodal":
        header += multimodal.header_lines(cfg, rows, runs)
    markdown = write_table(out, rows, runs, metrics, cfg.baseline, header, train_time=SPEED[cfg.task] == "train_s")
    if len(lrs) > 1:
        markdown = write_grid(out, grid_runs, monitor)
    dataset = cfg.base.data.dataset
    plot_curves(curves, out / "val_curves.png", monitor, f"{cfg.task} on {dataset}: validation {monitor}")
    plot_curves(by_time, out / "loss_vs_time.png", "training loss (mean per logged window)",
                f"{cfg.task} on {dataset}: quality per second of training",
                xlabel="training seconds (evaluation excluded)", markers=False)
    return {"rows": rows, "runs": runs, "markdown": markdown, "out": str(out)}


def machine_line(m: dict[str, Any]) -> str:
    """A machine record as the tables print it: ``AMD EPYC (2 cores, 1 threads)``."""
    return f"{m.get('device_name')} ({m.get('cpu_count')} cores, {m.get('torch_threads')} threads)"


def _header(cfg: CompareConfig, wall_s: float, runs: list[dict[str, Any]]) -> str:
    from linmix.train.reporting import machine, versions

    import torch

    device = cfg.base.run.device
    m = machine(torch.device("cpu") if device in ("auto", "cpu") else torch.device(device))
    machine_text = machine_line(m)
    v = ", ".join(f"{k} {val}" for k, val in versions().items())
    lrs = ", ".join(f"{lr:g}" for lr in cfg.lrs) if cfg.lrs else "task default"
    return (f"# linmix compare {cfg.task}: {cfg.base.data.dataset}\n\n"
            f"- candidates: {', '.join(cfg.candidates)}; baseline: {cfg.baseline}\n"
            f"- same data, tokenizer, {_length_text(cfg, runs)}, batch, seeds "
            f"({cfg.seeds}), LR grid ({lrs}; best per candidate); "
            + ("d_model sized so parameters are within 10% of the baseline's" if cfg.match_params else
               f"every network at d_model {cfg.base.model.d_model} (no parameter matching)") + "\n"
            f"- reported: the {_reported_text(cfg.task)}"
            + (f"; {METRICS[cfg.task][1]}_at_baseline_s: the periodic evaluation ({cfg.base.run.eval_batches} "
               f"batches) last reached within the baseline's training seconds (quality at equal time)"
               if cfg.task == "lm" else "") + "\n"
            f"- train tokens/s: median over logged training windows (evaluation excluded); wall s includes "
            f"evaluation\n- machine: {machine_text}; {v}\n- total wall time: {wall_s:.0f} s\n")


def _length_text(cfg: CompareConfig, runs: list[dict[str, Any]]) -> str:
    nets = [r for r in runs if r["steps"] is not None]  # ridge takes no steps
    if cfg.time_budget_s is not None:
        steps = ", ".join(f"{r['candidate']} {r['steps']}" for r in nets if r["seed"] == 0)
        return (f"training time budget ({cfg.time_budget_s:g} s of training steps each; steps from a "
                f"{cfg.probe_steps}-step timing probe: {steps})")
    planned = nets[0].get("total_steps", nets[0]["steps"]) if nets else None
    if cfg.base.run.epochs is not None:
        return f"epochs ({cfg.base.run.epochs:g} = {planned} steps)"
    return f"steps ({planned})"


def _reported_text(task: str) -> str:
    if REPORTED[task] == "final":
        return "final evaluation after the last step (whole validation split unless final_eval_batches bounds it)"
    if REPORTED[task] == "test":
        return "test-split scores of each network's weights at its best validation evaluation (below)"
    return "best periodic evaluation (like the papers' best validation accuracy over epochs)"
