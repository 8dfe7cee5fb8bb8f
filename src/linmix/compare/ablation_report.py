"""The report of ``linmix ablate``: one table grouped by factor, a CSV, the run records and a bar chart.

Each variant's row shows its validation accuracy at every LR of the grid (mean over seeds), the best of those
(mean ± std over seeds when there are several), the difference from its mixer family's ``reference`` variant
and its training seconds per epoch. See :mod:`linmix.compare.ablation` for the config and the runs.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from linmix.compare.records import without_configs
from linmix.compare.table import mean_std
from linmix.models.pretrained import write_json_atomic

if TYPE_CHECKING:
    from linmix.compare.ablation import AblationConfig, Variant

REFERENCE = "reference"
METRIC = "val_acc"
#: bar colours: attention variants apart from the rest
COLOURS = {"attention": "tab:orange", "other": "tab:blue"}


def summarize(cfg: AblationConfig, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per variant, reference group first, then the groups in the order the config names them."""
    groups = list(dict.fromkeys([REFERENCE] * any(v.group == REFERENCE for v in cfg.variants)
                                + [v.group for v in cfg.variants]))
    rows = [_row(v, [r for r in records if r["variant"] == v.name], cfg.lrs)
            for g in groups for v in cfg.variants if v.group == g]
    refs = {r["family"]: r for r in rows if r["group"] == REFERENCE}
    for row in rows:
        ref = refs.get(row["family"])
        usable = ref is not None and math.isfinite(row[METRIC]) and math.isfinite(ref[METRIC])
        row["reference"] = ref["variant"] if ref else ""
        row["delta"] = row[METRIC] - ref[METRIC] if usable else float("nan")
    return rows


def _row(v: Variant, mine: list[dict[str, Any]], lrs: list[float]) -> dict[str, Any]:
    """A variant's numbers: per-LR means, the best LR's mean and std, its parameters and seconds per epoch."""
    per_lr = {lr: [r for r in mine if math.isclose(r["lr"], lr) and r.get(METRIC) is not None] for lr in lrs}
    means = {lr: mean_std([r[METRIC] for r in runs])[0] for lr, runs in per_lr.items()}
    finite = {lr: m for lr, m in means.items() if math.isfinite(m)}
    best_lr = max(finite, key=finite.get) if finite else None
    best = per_lr[best_lr] if best_lr is not None else []
    acc, std = mean_std([r[METRIC] for r in best])
    return {"group": v.group, "variant": v.name, "candidate": v.candidate.name, "family": v.family,
            "attention": "attention" in v.family.split("+"),
            "overrides": ", ".join(f"{k}={val}" for k, val in v.overrides.items()),
            "params": mine[0]["params"] if mine else None, "d_model": mine[0]["d_model"] if mine else None,
            **{f"{METRIC}_lr{lr:g}": means[lr] for lr in lrs}, "best_lr": best_lr, "seeds": len(best),
            METRIC: acc, f"{METRIC}_std": std, "s_per_epoch": mean_std([r.get("s_per_epoch") for r in best])[0],
            "runs": len(mine)}


def _num(value: float | None, digits: int = 4, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def to_markdown(rows: list[dict[str, Any]], lrs: list[float]) -> str:
    """The table: factor | variant | mixer/layers | overrides | params | val_acc per LR (best in bold) |
    best val_acc | delta vs the reference | train s/epoch."""
    head = ["factor", "variant", "mixer/layers", "overrides", "params", *(f"{METRIC} lr {lr:g}" for lr in lrs),
            f"best {METRIC}", "Δ vs reference", "train s/epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        per_lr = [_num(r[f"{METRIC}_lr{lr:g}"]) for lr in lrs]
        per_lr = [f"**{c}**" if r["best_lr"] is not None and lr == r["best_lr"] and len(lrs) > 1 else c
                  for lr, c in zip(lrs, per_lr)]
        best = _num(r[METRIC]) + (f" ± {r[f'{METRIC}_std']:.4f}" if r["seeds"] > 1 else "")
        delta = "ref" if r["group"] == REFERENCE and r["reference"] == r["variant"] else _num(r["delta"], sign=True)
        cells = [r["group"], r["variant"], f"`{r['candidate']}`", r["overrides"] or "-",
                 "n/a" if r["params"] is None else f"{r['params']:,}", *per_lr, best, delta,
                 _num(r["s_per_epoch"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def header(cfg: AblationConfig, records: list[dict[str, Any]], planned: int) -> str:
    """What ran, on what, and what was varied: the protocol, how numbers are reported, the machine, the time."""
    from linmix.train.reporting import versions

    b = cfg.base.resolved()
    m, d, o, run = b.model, b.data, b.optim, b.run
    seeds = f"; mean ± std over {cfg.seeds} seeds" if cfg.seeds > 1 else ""
    n_seeds = f"{cfg.seeds} seed" + ("s" if cfg.seeds > 1 else "")
    machines = ", ".join(dict.fromkeys(r.get("machine", "unknown") for r in records))
    v = ", ".join(f"{k} {val}" for k, val in versions().items())
    wall = sum(r.get("wall_s") or 0.0 for r in records)
    return (f"# linmix ablate classify: {d.dataset}\n\n"
            "One change per variant against the reference of its mixer family, everything else the same.\n\n"
            f"- protocol: {d.dataset}, {d.tokenizer} tokenizer (vocabulary {d.vocab_size}), max_len {m.max_len}, "
            f"d_model {m.d_model}, n_heads {m.n_heads}, {m.pooling} pooling, batch {d.batch_size}, "
            f"{_length(cfg, records)}, {o.schedule} LR schedule (warmup {o.warmup}, floor {o.min_lr_ratio:g} x lr), "
            f"AdamW (betas {o.beta1:g}/{o.beta2:g}, weight decay {o.weight_decay:g}, clip {o.grad_clip:g}); LR "
            f"grid {', '.join(f'{lr:g}' for lr in cfg.lrs)} (best per variant); {n_seeds}; no parameter "
            "matching (width is a factor: parameters per variant below)\n"
            f"- reported: best periodic evaluation of {METRIC} (the summation papers report best validation "
            f"accuracy over epochs; eval every {run.eval_every} steps) at each variant's best LR{seeds}; Δ: best "
            f"{METRIC} minus that of the reference variant of the same mixer family; train s/epoch: median logged "
            "step time x steps per epoch (evaluation excluded)\n"
            f"- varied:\n{_varied(cfg)}"
            f"- runs: {len(records)} of {planned} finished\n- machine: {machines}; {v}\n"
            f"- total wall time: {wall:.0f} s (sum of the runs' wall times)\n")


def _length(cfg: AblationConfig, records: list[dict[str, Any]]) -> str:
    """``4 epochs (= 1376 steps on 20newsgroups)``: the planned length, in steps on the base dataset."""
    run, dataset = cfg.base.run, cfg.base.data.dataset
    steps = next((r["total_steps"] for r in records if r.get("dataset") == dataset), None)
    if run.epochs is None:
        return f"{run.steps} steps"
    return f"{run.epochs:g} epochs" + (f" (= {steps} steps on {dataset})" if steps else "")


def _varied(cfg: AblationConfig) -> str:
    """One indented line per factor: its variants and what each sets."""
    groups: dict[str, list[str]] = {}
    for v in cfg.variants:
        change = f"`{v.candidate.name}`" + (f", {', '.join(f'{k}={x}' for k, x in v.overrides.items())}"
                                            if v.overrides else "")
        groups.setdefault(v.group, []).append(f"{v.name} ({change})")
    return "".join(f"  - {g}: {'; '.join(items)}\n" for g, items in groups.items())


def plot_ablation(rows: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Horizontal bars of best val_acc per variant, grouped by factor (a gap and a label between groups),
    attention variants in their own colour, a dashed line at each reference's value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if math.isfinite(r[METRIC])]
    if not shown:
        return None
    ys, y, labels, last = [], 0.0, [], None
    for r in shown:
        if last is not None and r["group"] != last:
            y += 0.8  # the gap between two factors
        ys.append(y)
        labels.append(f"{r['group']}: {r['variant']}" if r["group"] != last else r["variant"])
        last, y = r["group"], y + 1
    fig, ax = plt.subplots(figsize=(8, 0.38 * y + 1.6))
    colours = [COLOURS["attention" if r["attention"] else "other"] for r in shown]
    errors = [r[f"{METRIC}_std"] if r["seeds"] > 1 else 0.0 for r in shown]
    ax.barh(ys, [r[METRIC] for r in shown], color=colours, xerr=errors, height=0.7)
    for y_bar, r in zip(ys, shown):
        ax.text(r[METRIC], y_bar, f" {r[METRIC]:.3f}", va="center", fontsize=7)
    for r in shown:
        if r["group"] == REFERENCE and r["reference"] == r["variant"]:
            ax.axvline(r[METRIC], linestyle="--", linewidth=1,
                       color=COLOURS["attention" if r["attention"] else "other"], label=f"{r['variant']} (reference)")
    values = [r[METRIC] for r in shown]
    ax.set_xlim(max(0.0, min(values) - 0.05), min(1.0, max(values) + 0.04))
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"best {METRIC} (over the LR grid)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(out: Path, cfg: AblationConfig, records: list[dict[str, Any]], planned: int) -> tuple[list[dict], str]:
    """Write ``results.md``, ``results.csv``, ``runs.json`` and ``ablation.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(cfg, records)
    markdown = (header(cfg, records, planned).rstrip() + "\n\n![best val_acc per variant](ablation.png)\n\n"
                + to_markdown(rows, cfg.lrs))
    (out / "results.md").write_text(markdown)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_json_atomic(out / "runs.json", without_configs(records))
    plot_ablation(rows, out / "ablation.png", f"ablation on {cfg.base.data.dataset}: best {METRIC} per variant")
    return rows, markdown
