"""``bench ops`` conclusions: per-case log-log slopes, crossover with attention, tables and plots.

Slopes are fitted over the upper half of the measured range (see :mod:`linmix.bench.stats`); the
crossover is the length from which a case stays faster than attention of the same mode.
"""
from __future__ import annotations

from pathlib import Path

from linmix.bench.registry import BASELINE
from linmix.bench.report import md_table, pivot, sections, targets_markdown
from linmix.bench.stats import crossover, series, upper_half, upper_slope

TITLE = "linmix bench ops: operator scaling vs length"
SLOPES = (("fwd_bwd_ms", "slope_fwd_bwd"), ("fwd_ms", "slope_fwd"), ("peak_mem_mib", "slope_memory"))


def _crossovers(rows: list[dict], label: str) -> dict:
    """Where ``label`` becomes faster than attention of its mode (fwd+bwd and fwd)."""
    mode = label.split("/")[-1] if "/" in label else "causal"
    out = {}
    for key, name in (("fwd_bwd_ms", "crossover_fwd_bwd"), ("fwd_ms", "crossover_fwd")):
        mine = series(rows, "case", label, "T", key)
        ref = series(rows, "case", f"{BASELINE}/{mode}", "T", key)
        ts = sorted(t for t in mine if t in ref)
        out[name] = crossover(ts, [mine[t] for t in ts], [ref[t] for t in ts])
    return out


def summarize(rows: list[dict], config=None) -> dict:
    """Per-case slopes (time, memory) over the upper half of the range and crossovers with attention."""
    lengths = sorted({r["T"] for r in rows})
    cases: dict[str, dict] = {}
    for label in dict.fromkeys(r["case"] for r in rows):
        cases[label] = {name: upper_slope(series(rows, "case", label, "T", key), lengths) for key, name in SLOPES}
        if not label.startswith(f"{BASELINE}/"):
            cases[label] |= _crossovers(rows, label)
    return {"upper_half": upper_half(lengths), "cases": cases}


def _fmt(x, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def _slopes_table(summary: dict) -> str:
    body = [[label, _fmt(i.get("slope_fwd_bwd")), _fmt(i.get("slope_fwd")), _fmt(i.get("slope_memory")),
             (i.get("crossover_fwd_bwd") or {}).get("text", "baseline"),
             (i.get("crossover_fwd") or {}).get("text", "baseline")] for label, i in summary["cases"].items()]
    return md_table(["case", "slope time fwd+bwd", "slope time fwd", "slope memory",
                     "faster than attention from T (fwd+bwd)", "(fwd)"], body)


def markdown(result: dict) -> str:
    """The ``ops.md`` tables: times, speedups, floor multiples, throughput, memory, slopes, targets."""
    rows, meta, summary = result["rows"], result["meta"], result["summary"]
    cfg, machine = meta["config"], meta["machine"]

    def table(key: str, fmt, subset=rows) -> str:
        return pivot(subset, "case", "T", key, fmt)

    ms, x = (lambda v: f"{v:.2f}"), (lambda v: f"{v:.2f}x")
    parts = [
        ("", f"Batch {cfg['batch_size']}, D={cfg['d_model']}, {cfg['dtype']}, device {machine['device']}, "
             f"{machine['torch_threads']} threads; medians of up to {cfg['repeats']} repeats after "
             f"{cfg['warmup']} warm-up call(s), cases interleaved round-robin per length."),
        ("Forward + backward time (ms, median)", table("fwd_bwd_ms", ms)),
        ("Speedup over attention of the same mode (fwd+bwd; >1 = faster)", table("speedup_fwd_bwd", x)),
        ("Multiple of the case's own projection floor (fwd+bwd; n_proj x Linear(D, D), clone if none)",
         table("floor_multiple_fwd_bwd", ms, [r for r in rows if r["kind"] != "floor"])),
        ("Forward time (ms, median, no grad)", table("fwd_ms", ms)),
        ("Speedup over attention (forward only)", table("speedup_fwd", x)),
        ("Training throughput (fwd+bwd tokens/s, thousands)", table("fwd_bwd_tokens_per_s", lambda v: f"{v / 1e3:.0f}")),
        ("Peak extra memory of forward+backward (MiB, fresh process per point)",
         table("peak_mem_mib", lambda v: f"{v:.1f}")),
        (f"Log-log slopes over T in {summary['upper_half']} and crossover with attention", _slopes_table(summary)),
        ("Targets", targets_markdown(summary["targets"])),
    ]
    notes = sorted({r["note"] for r in rows if r.get("note")})
    if notes:
        parts.append(("Notes", "\n".join(f"- {n}" for n in notes)))
    return sections(*parts)


def plot(result: dict, out: Path) -> list[Path]:
    """``ops_time.png`` and (with memory measured) ``ops_memory.png``."""
    from linmix.bench.plots import plot_ops

    return plot_ops(result, out)
