"""The outputs of ``linmix distill-demo``: every number in ``results.json``, one row per candidate in
``results.csv``, the table in ``results.md`` and the figure ``results.png``.

A row holds the candidate's converted layer spec, its parameter count, and five validation losses on the
same batches: the teacher's, the plain swap's (converted, nothing trained), after attention transfer,
after recovery, and the same architecture's trained from scratch for as many steps as the teacher, the
transfer and the recovery together.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import torch

from linmix.models.pretrained import write_json_atomic
from linmix.train.reporting import save_png

OUTPUTS = ("results.md", "results.csv", "results.json", "results.png")
#: the columns of results.csv, in order
COLUMNS = ("candidate", "layers", "mixer", "keep", "replaced", "kept", "params", "params_scratch", "teacher",
           "swap", "transfer", "recovery", "scratch", "scratch_steps", "distilled_steps", "scratch_status",
           "recovery_minus_scratch", "distill_s", "scratch_s")
#: the points of results.png, left to right: (row key, label)
POINTS = (("swap", "plain swap"), ("transfer", "after transfer"), ("recovery", "after recovery"),
          ("scratch", "from scratch"))


def _final(summary: dict[str, Any]) -> float | None:
    value = (summary.get("final") or {}).get("val_loss")
    return float(value) if isinstance(value, (int, float)) else None


def _row(entry: dict[str, Any], distilled_steps: int, times: dict[str, float]) -> dict[str, Any]:
    cand, d, s = entry["candidate"], entry["distill"], entry["scratch"]
    val, scratch = d["val_loss"], _final(s)
    return {"candidate": cand.text, "layers": d["layers"], "mixer": cand.mixer, "keep": cand.keep_text,
            "replaced": len(d["replaced"]), "kept": len(d["kept"]), "params": d["params"]["after"],
            "params_scratch": s["parameters"],
            "teacher": val["teacher"], "swap": val["swap"], "transfer": val["transfer"],
            "recovery": val["recovery"], "scratch": scratch, "scratch_steps": s["steps_done"],
            "distilled_steps": distilled_steps, "scratch_status": s["status"],
            "recovery_minus_scratch": val["recovery"] - scratch if scratch is not None else None,
            "distill_s": times.get(f"{cand.slug}/distill"), "scratch_s": s["wall_time_s"]}


def build_results(config: Any, teacher: Any, teacher_summary: dict[str, Any], entries: list[dict[str, Any]],
                  times: dict[str, float], out: Path, wall_s: float, command: str) -> dict[str, Any]:
    """The ``results.json`` dict: settings, the teacher, one row per candidate, each stage's details."""
    from linmix.train.reporting import machine, versions

    distilled = teacher.run.steps + config.stage_steps
    rows = [_row(entry, distilled, times) for entry in entries]
    first = entries[0]["distill"] if entries else {}
    device = teacher.run.device
    return {
        "config": config.to_dict(), "out": str(out), "command": command,
        "teacher": {"layers": teacher.model.layers, "params": teacher_summary["parameters"],
                    "steps": teacher_summary["steps_done"], "val_loss": _final(teacher_summary),
                    "status": teacher_summary["status"], "wall_s": teacher_summary["wall_time_s"],
                    "tokens_per_s": teacher_summary.get("tokens_per_s"), "run_dir": str(out / "teacher"),
                    "config": teacher.to_dict()},
        "steps": {"teacher": teacher.run.steps, "transfer": config.transfer_steps,
                  "recovery": config.recovery_steps, "scratch": distilled},
        "eval": {"batches": teacher.run.final_eval_batches, "tokens": first.get("val_tokens"),
                 "batch_size": teacher.data.batch_size, "block": teacher.model.max_len},
        "rows": rows,
        "candidates": [{"candidate": e["candidate"].text, "folder": str(e["folder"]),
                        "distill": {k: e["distill"].get(k) for k in ("layers", "replaced", "kept", "val_loss",
                                                                     "val_tokens", "params", "transfer",
                                                                     "recovery", "notes")},
                        "scratch": {k: e["scratch"].get(k) for k in ("layers", "status", "steps_done",
                                                                     "total_steps", "parameters", "final", "best",
                                                                     "wall_time_s", "tokens_per_s")}}
                       for e in entries],
        "wall_s": {"stages": dict(times), "stages_total": sum(times.values()), "this_run": wall_s},
        "machine": machine(torch.device("cpu") if device in ("auto", "cpu") else torch.device(device)),
        "versions": versions(),
    }


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) and math.isfinite(value) else "-"


def markdown(results: dict[str, Any]) -> str:
    """``results.md``: how the numbers were made, then the table."""
    cfg, t, steps, ev = results["config"], results["teacher"], results["steps"], results["eval"]
    optim, data = t["config"]["optim"], t["config"]["data"]
    m, w = results["machine"], results["wall_s"]
    evaluated = ("the whole validation split" if ev["batches"] is None
                 else f"the first {ev['batches']} validation batches")
    lines = ["# Converting a trained attention LM: plain swap, attention transfer, recovery, from scratch", "",
             f"- teacher: `{t['layers']}` ({t['params']:,} parameters), {data['dataset']} ({data['tokenizer']} "
             f"tokens), block {ev['block']}, batch {ev['batch_size']}, AdamW lr {optim['lr']:g} ({optim['schedule']}, "
             f"warmup {optim['warmup']}, min_lr_ratio {optim['min_lr_ratio']:g}), weight decay "
             f"{optim['weight_decay']:g}, betas ({optim['beta1']:g}, {optim['beta2']:g}); {t['steps']} steps",
             "- conversion (`linmix.convert`): the attention layers become the candidate's mixer, q/k/v/out "
             "copied where it has them; `keep` layers stay softmax attention",
             f"- attention transfer: {steps['transfer']} steps, lr {cfg['transfer_lr']:g}, {cfg['loss']} loss "
             f"against each replaced attention layer; recovery: {steps['recovery']} steps, lr "
             f"{cfg['recovery_lr']:g}, kl_weight {cfg['kl_weight']:g}, lora_rank {cfg['lora_rank']} "
             "(both train the new mixers only)",
             f"- from scratch: the converted layer spec from a fresh initialisation, trained for teacher + "
             f"transfer + recovery = {steps['teacher']} + {steps['transfer']} + {steps['recovery']} = "
             f"{steps['scratch']} steps with the teacher's data, batch, optimiser and schedule (over its own "
             f"{steps['scratch']} steps)",
             f"- validation loss: next-token cross-entropy on {evaluated} ({ev['tokens'] or 0:,} tokens), the "
             "same batches for every model",
             f"- machine: {m.get('device_name')} ({m.get('cpu_count')} cores, {m.get('torch_threads')} threads); "
             f"wall time of all stages: {w['stages_total']:.0f} s", "",
             "| candidate | params | plain swap | after transfer | after recovery | from scratch (steps) | teacher |",
             "|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        name = f"`{r['layers']}`" + (f" (keep={r['keep']})" if r["keep"] else "")
        scratch = f"{_fmt(r['scratch'])} ({r['scratch_steps']})"
        if r["scratch_status"] != "completed":
            scratch += f" {r['scratch_status']}"
        lines.append(f"| {name} | {r['params']:,} | {_fmt(r['swap'])} | {_fmt(r['transfer'])} | "
                     f"{_fmt(r['recovery'])} | {scratch} | {_fmt(r['teacher'])} |")
    lines += ["", "![validation loss per candidate](results.png)", "", "Reproduce (or resume) with:", "", "```",
              results["command"] or "linmix distill-demo --config CONFIG", "```", ""]
    return "\n".join(lines)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def plot(results: dict[str, Any], path: Path) -> Path:
    """One line per candidate through plain swap -> after transfer -> after recovery, its from-scratch
    loss as a square beside them, and the teacher's as a dashed line; log scale when the plain swaps lie
    far above the rest."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(results["rows"]))]
    values = []
    for row, color in zip(results["rows"], colors):
        stages = [(i, row[key]) for i, (key, _) in enumerate(POINTS[:3]) if _finite(row[key])]
        label = row["layers"] + (f" (keep={row['keep']})" if row["keep"] else "")
        ax.plot([x for x, _ in stages], [v for _, v in stages], "o-", color=color, label=label, markersize=4)
        if _finite(row["scratch"]):
            ax.plot([3], [row["scratch"]], "s", color=color, markersize=6)
        values += [v for _, v in stages] + ([row["scratch"]] if _finite(row["scratch"]) else [])
    teacher = results["teacher"]["val_loss"]
    if _finite(teacher):
        ax.axhline(teacher, color="black", linestyle="--", linewidth=1, label=f"teacher ({teacher:.3f})")
        values.append(teacher)
    if values and min(values) > 0 and max(values) / min(values) > 1.5:
        ax.set_yscale("log")
    ax.set_xticks(range(len(POINTS)))
    ax.set_xticklabels([label for _, label in POINTS[:3]] + [f"from scratch\n({results['steps']['scratch']} steps)"])
    ax.set_xlim(-0.3, len(POINTS) - 0.7)
    ax.set_ylabel("validation loss")
    ax.set_title(f"{results['teacher']['layers']} converted and distilled vs trained from scratch", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, path)


def _finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def write_outputs(results: dict[str, Any], out: Path) -> None:
    """``results.json``, ``results.csv``, ``results.md`` and ``results.png`` in ``out`` (each atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", results)
    write_csv(results["rows"], out / "results.csv")
    tmp = out / "results.md.tmp"
    tmp.write_text(markdown(results))
    os.replace(tmp, out / "results.md")
    plot(results, out / "results.png")
