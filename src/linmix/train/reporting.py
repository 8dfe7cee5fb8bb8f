"""Run reporting: the progress bar, ``metrics.jsonl`` upkeep, ``summary.json`` and the loss and LR curve PNGs.

``metrics.jsonl`` holds one JSON record a line: ``train`` (mean loss, the LR of the step, throughput; every
``log_every`` steps, whatever the schedule), ``eval``, ``lr_decision`` (one per LR-controller decision: the
:class:`~linmix.train.qlearning.Decision` fields plus ``lr``, the LR it sets for the next step) and ``final``.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from linmix.models.pretrained import write_json_atomic


def save_png(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically (a temporary file, then a rename): an interrupted run never
    leaves half a PNG where the last complete one was."""
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def progress_bar(total: int, initial: int, enabled: bool) -> tqdm:
    """A tqdm bar over steps (ETA from tqdm); postfix carries loss, LR and tokens/s."""
    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True,
                file=sys.stderr, mininterval=0.5, desc="train")


def eval_line(step: int, metrics: dict[str, float], improved: bool) -> str:
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if not k.endswith(("_tokens", "_examples")))
    return f"step {step}: {shown}{' (best)' if improved else ''}"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` (a torn last line from a killed run is skipped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def empty_history() -> dict[str, list[tuple]]:
    """What the plots draw: ``train``/``val`` ``(step, loss)``, ``lr`` ``(step, lr)`` and ``decisions``
    ``(step, new lr, factor, explored)``."""
    return {"train": [], "val": [], "lr": [], "decisions": []}


def truncate_metrics(path: Path, step: int) -> dict[str, list[tuple]]:
    """Drop records after ``step`` (written by a run that died after its last checkpoint); return the
    history that is left (:func:`empty_history`), for the plots."""
    kept = [r for r in read_metrics(path)
            if r.get("step", 0) <= step and r.get("type") in ("train", "eval", "lr_decision")]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)
    history = empty_history()
    for r in kept:
        if r["type"] == "train":
            history["train"].append((r["step"], r["loss"]))
            history["lr"].append((r["step"], r["lr"]))
        elif r["type"] == "eval":
            history["val"].append((r["step"], r["val_loss"]))
        else:
            history["decisions"].append((r["step"], r["lr"], r["factor"], r["explored"]))
    return history


def versions() -> dict[str, str]:
    import numpy

    from linmix import __version__

    return {"linmix": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "numpy": numpy.__version__}


def machine(device: torch.device) -> dict[str, Any]:
    """Platform, CPU, thread count and accelerator name."""
    info: dict[str, Any] = {"platform": platform.platform(), "processor": _cpu_name(), "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    else:
        info["device_name"] = info["processor"]
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_summary(*, config: Any, status: str, message: str, steps_done: int, total_steps: int, steps_per_epoch: int,
                  wall_time_s: float, parameters: int, best: dict[str, Any], final: dict[str, float] | None,
                  tokens_seen: int, device: torch.device, world_size: int, last_checkpoint: str | None,
                  lr_scale: float | None, extra: dict[str, Any]) -> dict[str, Any]:
    """The ``summary.json`` dict of a run."""
    return {
        "status": status, "message": message, "task": config.task, "dataset": config.data.dataset,
        "layers": config.model.layers, "seed": config.run.seed, "config": config.to_dict(),
        "steps_done": steps_done, "total_steps": total_steps, "epochs_done": steps_done / steps_per_epoch,
        "parameters": parameters, "wall_time_s": wall_time_s, "tokens_seen": tokens_seen,
        "tokens_per_s": tokens_seen / wall_time_s if wall_time_s > 0 else None,
        "best": best, "final": final, "world_size": world_size, "last_checkpoint": last_checkpoint,
        "lr_controller_scale": lr_scale, "versions": versions(), "machine": machine(device), **extra,
    }


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    write_json_atomic(path, _clean(summary))


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf become strings (strict JSON has no such numbers)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def plot_losses(history: dict[str, list[tuple[int, float]]], path: Path, title: str = "") -> Path | None:
    """Train and validation loss against step (matplotlib, Agg backend); ``None`` when nothing to plot."""
    if not history["train"] and not history["val"]:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure on the Agg canvas: no pyplot, so the caller's backend and open figures are untouched.
    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = 0
    for key, style in (("train", "-"), ("val", "o-")):
        points = [(s, v) for s, v in history[key] if math.isfinite(v)]
        if points:
            ax.plot([s for s, _ in points], [v for _, v in points], style, label=key, markersize=3)
            drawn += 1
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend()
    fig.tight_layout()
    return save_png(fig, path)


def plot_lr(history: dict[str, list[tuple]], path: Path, title: str = "") -> Path | None:
    """The LR (top, log scale) and the training and validation loss (bottom) against step; LR-controller
    decisions are marked on the LR curve (down/up triangles: cut/raise, dots: keep; hollow: a random exploration).
    ``None`` when no LR was logged."""
    if not history["lr"]:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 5.5))
    FigureCanvasAgg(fig)
    ax_lr, ax_loss = fig.subplots(2, 1, sharex=True)
    # a train record's lr is that of the steps since the previous record: a step curve ending at its step
    ax_lr.plot([s for s, _ in history["lr"]], [v for _, v in history["lr"]], "-", color="C0", label="lr",
               drawstyle="steps-pre")
    for marker, keep in (("v", lambda f: f < 1), ("^", lambda f: f > 1), ("o", lambda f: f == 1)):
        for explored in (False, True):
            points = [(s, v) for s, v, f, e in history["decisions"] if keep(f) and e == explored]
            if points:
                ax_lr.plot([s for s, _ in points], [v for _, v in points], marker, linestyle="none", markersize=5,
                           color="C3", markerfacecolor="none" if explored else "C3")
    if history["decisions"]:
        ax_lr.plot([], [], "v", color="C3", label="controller: cut / raise (^) / keep (o); hollow = explored")
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title(title, fontsize=9)
    ax_lr.legend(fontsize=7)
    points = [(s, v) for s, v in history["train"] if math.isfinite(v)]
    ax_loss.plot([s for s, _ in points], [v for _, v in points], "-", color="C1", label="train loss")
    points = [(s, v) for s, v in history["val"] if math.isfinite(v)]
    if points:
        ax_loss.plot([s for s, _ in points], [v for _, v in points], "o-", color="C2", label="val loss", markersize=3)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize=7)
    for ax in (ax_lr, ax_loss):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, path)
