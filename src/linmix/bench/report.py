"""Turn benchmark rows into conclusions: log-log slopes, crossover lengths, target checks, markdown, files.

* **slope**: least-squares fit of ``log(value)`` on ``log(T)`` over the upper half of the measured range
  (the lengths ``T >= sqrt(T_min T_max)``), where constant overheads have faded: 1 is linear, 2 quadratic.
* **crossover**: the shortest length from which a mixer stays faster than attention (same mode) for every
  longer measured length, interpolated on the log-log speedup curve between the last slower and the first
  faster length. ``< T_min`` when it is faster everywhere; ``None`` when it never is.
* **targets**: the speed targets of the benchmark issue, each checked against the measured rows and marked
  ``met``, ``missed`` (with the shortfall) or ``n/a`` (the run did not measure it).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from linmix.bench.registry import BASELINE

# ------------------------------------------------------------------------------------------ numbers


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ``log y`` on ``log x`` (None with fewer than two positive points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def upper_half(lengths: list[int]) -> list[int]:
    """Lengths at or above the geometric middle of the range (at least the top two when there are two)."""
    if not lengths:
        return []
    ls = sorted(lengths)
    mid = math.sqrt(ls[0] * ls[-1])
    upper = [t for t in ls if t >= mid * (1 - 1e-9)]
    return upper if len(upper) >= 2 else ls[-2:]


def crossover(lengths: list[int], times: list[float | None], reference: list[float | None]) -> dict:
    """Where ``times`` becomes and stays below ``reference`` (see module docstring)."""
    pts = [(t, a / m) for t, m, a in zip(lengths, times, reference) if m and a]
    if not pts:
        return {"T": None, "text": "n/a"}
    k = len(pts)
    while k > 0 and pts[k - 1][1] > 1.0:
        k -= 1
    if k == len(pts):
        return {"T": None, "text": f"never (slower up to T={pts[-1][0]})"}
    if k == 0:
        return {"T": float(pts[0][0]), "text": f"< {pts[0][0]} (faster at every length)"}
    (t0, r0), (t1, r1) = pts[k - 1], pts[k]
    l0, l1 = math.log(r0), math.log(r1)
    frac = (0.0 - l0) / (l1 - l0) if l1 != l0 else 1.0
    value = math.exp(math.log(t0) + frac * (math.log(t1) - math.log(t0)))
    return {"T": value, "text": f"~{value:.0f} (between {t0} and {t1})"}


def _series(rows: list[dict], case: str, key: str, lengths: list[int] | None = None) -> tuple[list, list]:
    pts = sorted((r["T"], r.get(key)) for r in rows if r["case"] == case)
    if lengths is not None:
        pts = [p for p in pts if p[0] in lengths]
    return [p[0] for p in pts], [p[1] for p in pts]


def _value(rows: list[dict], case: str, T: int, key: str):
    for r in rows:
        if r["case"] == case and r["T"] == T:
            return r.get(key)
    return None


def summarize_ops(rows: list[dict], lengths: list[int]) -> dict:
    """Per-case slopes (time, memory) over the upper half of the range, crossovers, and target checks."""
    upper = upper_half(lengths)
    cases: dict[str, dict] = {}
    for label in dict.fromkeys(r["case"] for r in rows):
        info: dict = {}
        for key, name in (("fwd_bwd_ms", "slope_fwd_bwd"), ("fwd_ms", "slope_fwd"),
                          ("peak_mem_mib", "slope_memory")):
            xs, ys = _series(rows, label, key, upper)
            info[name] = loglog_slope(xs, ys)
        mode = label.split("/")[-1] if "/" in label else "causal"
        ref = f"{BASELINE}/{mode}"
        if not label.startswith(f"{BASELINE}/"):
            for key, name in (("fwd_bwd_ms", "crossover_fwd_bwd"), ("fwd_ms", "crossover_fwd")):
                ts, ms = _series(rows, label, key)
                _, refs = _series(rows, ref, key)
                if len(refs) == len(ms):
                    info[name] = crossover(ts, ms, refs)
        cases[label] = info
    return {"upper_half": upper, "cases": cases, "targets": ops_targets(rows, lengths, cases)}


# --------------------------------------------------------------------------------------- targets


def _target(name: str, measured: str, ok: bool | None, detail: str = "") -> dict:
    status = "n/a" if ok is None else ("met" if ok else "missed")
    return {"target": name, "measured": measured, "status": status, "detail": detail}


def shortfall(need: float, got: float) -> str:
    """``short by 1.25x`` (or ``short by 0.8%`` when within 5%)."""
    ratio = need / got
    return f"short by {100 * (ratio - 1):.1f}%" if ratio < 1.05 else f"short by {ratio:.2f}x"


def _fmt(x, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def ops_targets(rows: list[dict], lengths: list[int], cases: dict[str, dict]) -> list[dict]:
    """The issue's operator-level targets (CPU float32, fwd+bwd, full layer, ratios from this run)."""
    out = []
    s_c = "summation/causal"
    for T, need in ((512, 3.5), (4096, 12.0), (16384, 35.0)):
        sp = _value(rows, s_c, T, "speedup_fwd_bwd")
        out.append(_target(f"summation causal >= {need:g}x attention at T={T}", f"{_fmt(sp)}x",
                           None if sp is None else sp >= need,
                           "" if sp is None or sp >= need else shortfall(need, sp)))
    fm = [(T, _value(rows, s_c, T, "floor_multiple_fwd_bwd")) for T in lengths if T >= 4096]
    fm = [(T, v) for T, v in fm if v is not None]
    worst = max(fm, key=lambda p: p[1]) if fm else None
    out.append(_target("summation causal within 1.15x of its projection floor for T >= 4096",
                       ", ".join(f"{v:.2f}x@{T}" for T, v in fm) or "n/a",
                       None if worst is None else worst[1] <= 1.15,
                       "" if worst is None or worst[1] <= 1.15 else f"worst {worst[1]:.2f}x at T={worst[0]}"))
    for mode in ("causal", "bidir"):
        ratios = []
        for T in lengths:
            a, s = _value(rows, f"aggregation/{mode}", T, "fwd_bwd_ms"), _value(rows, f"summation/{mode}", T,
                                                                                  "fwd_bwd_ms")
            if a and s:
                ratios.append((T, a / s))
        worst = max(ratios, key=lambda p: p[1]) if ratios else None
        out.append(_target(f"aggregation {mode} at or below summation's time (every T)",
                           "" if worst is None else f"max ratio {worst[1]:.2f} at T={worst[0]}",
                           None if worst is None else worst[1] <= 1.0))
    sp = _value(rows, "spectral/causal", 8192, "speedup_fwd_bwd")
    out.append(_target("spectral causal >= 8x attention at T=8192", f"{_fmt(sp)}x",
                       None if sp is None else sp >= 8.0,
                       "" if sp is None or sp >= 8 else shortfall(8.0, sp)))
    ratios = []
    for T in lengths:
        b, c = _value(rows, "spectral/bidir", T, "fwd_bwd_ms"), _value(rows, "spectral/causal", T, "fwd_bwd_ms")
        if b and c:
            ratios.append((T, b / c))
    worst = max(ratios, key=lambda p: p[1]) if ratios else None
    out.append(_target("spectral bidir within 1.2x of causal time (every T)",
                       "" if worst is None else f"max ratio {worst[1]:.2f} at T={worst[0]}",
                       None if worst is None else worst[1] <= 1.2))
    sps = [(T, _value(rows, "linear_attention/causal", T, "speedup_fwd_bwd")) for T in lengths if T >= 1024]
    sps = [(T, v) for T, v in sps if v is not None]
    worst = min(sps, key=lambda p: p[1]) if sps else None
    out.append(_target("linear_attention causal faster than attention from T=1024 up",
                       ", ".join(f"{v:.2f}x@{T}" for T, v in sps) or "n/a",
                       None if worst is None else worst[1] > 1.0))
    for mode in ("causal", "bidir"):
        info = cases.get(f"local_attention/{mode}", {})
        sl, ml = info.get("slope_fwd_bwd"), info.get("slope_memory")
        ok = None if sl is None else (sl <= 1.1 and (ml is None or ml <= 1.1))
        out.append(_target(f"local_attention {mode} linear in T (time and memory slope <= 1.1)",
                           f"time {_fmt(sl)}, memory {_fmt(ml)}", ok))
    for label, info in cases.items():
        name = label.split("/")[0]
        if name == BASELINE or label.startswith("floor:"):
            continue
        ml = info.get("slope_memory")
        out.append(_target(f"{label} peak fwd+bwd memory slope <= 1.1", _fmt(ml),
                           None if ml is None else ml <= 1.1))
    for name in ("summation", "aggregation"):
        for mode in ("causal", "bidir"):
            m = _value(rows, f"{name}/{mode}", 16384, "peak_mem_mib")
            a = _value(rows, f"{BASELINE}/{mode}", 16384, "peak_mem_mib")
            out.append(_target(f"{name} {mode} peak memory at T=16384 <= attention's",
                               f"{_fmt(m, '.0f')} vs {_fmt(a, '.0f')} MiB",
                               None if m is None or a is None else m <= a))
    return out


# -------------------------------------------------------------------------------------- markdown


def md_table(header: list[str], body: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _pivot(rows: list[dict], key: str, fmt, lengths: list[int]) -> str:
    labels = list(dict.fromkeys(r["case"] for r in rows))
    body = []
    for label in labels:
        cells = []
        for T in lengths:
            r = next((r for r in rows if r["case"] == label and r["T"] == T), None)
            if r is None:
                cells.append("")
            elif r.get(key) is None:
                cells.append("-" if r.get("status") == "ok" else r.get("status", "-"))
            else:
                cells.append(fmt(r[key]))
        body.append([label] + cells)
    return md_table(["case"] + [f"T={T}" for T in lengths], body)


def ops_markdown(result: dict) -> str:
    rows, meta, summary = result["rows"], result["meta"], result["summary"]
    lengths = meta["config"]["lengths"]
    cfg = meta["config"]
    parts = [
        f"Batch {cfg['batch_size']}, D={cfg['d_model']}, {cfg['dtype']}, device {meta['machine']['device']}, "
        f"{meta['machine']['torch_threads']} threads; medians of up to {cfg['repeats']} repeats after "
        f"{cfg['warmup']} warm-up call(s), cases interleaved round-robin per length.",
        "### Forward + backward time (ms, median)", _pivot(rows, "fwd_bwd_ms", lambda v: f"{v:.2f}", lengths),
        "### Speedup over attention of the same mode (fwd+bwd; >1 = faster)",
        _pivot(rows, "speedup_fwd_bwd", lambda v: f"{v:.2f}x", lengths),
        "### Multiple of the case's own projection floor (fwd+bwd; n_proj x Linear(D, D), clone if none)",
        _pivot([r for r in rows if r["kind"] != "floor"], "floor_multiple_fwd_bwd", lambda v: f"{v:.2f}", lengths),
        "### Forward time (ms, median, no grad)", _pivot(rows, "fwd_ms", lambda v: f"{v:.2f}", lengths),
        "### Speedup over attention (forward only)", _pivot(rows, "speedup_fwd", lambda v: f"{v:.2f}x", lengths),
        "### Training throughput (fwd+bwd tokens/s, thousands)",
        _pivot(rows, "fwd_bwd_tokens_per_s", lambda v: f"{v / 1e3:.0f}", lengths),
        "### Peak extra memory of forward+backward (MiB, fresh process per point)",
        _pivot(rows, "peak_mem_mib", lambda v: f"{v:.1f}", lengths),
    ]
    upper = summary["upper_half"]
    body = []
    for label, info in summary["cases"].items():
        body.append([label, _fmt(info.get("slope_fwd_bwd")), _fmt(info.get("slope_fwd")),
                     _fmt(info.get("slope_memory")),
                     (info.get("crossover_fwd_bwd") or {}).get("text", "baseline"),
                     (info.get("crossover_fwd") or {}).get("text", "baseline")])
    parts += [f"### Log-log slopes over T in {upper} and crossover with attention",
              md_table(["case", "slope time fwd+bwd", "slope time fwd", "slope memory",
                        "faster than attention from T (fwd+bwd)", "(fwd)"], body)]
    parts += ["### Targets", targets_markdown(summary["targets"])]
    notes = sorted({r["note"] for r in rows if r.get("note")})
    if notes:
        parts += ["### Notes", "\n".join(f"- {n}" for n in notes)]
    return "\n\n".join(parts) + "\n"


def targets_markdown(targets: list[dict]) -> str:
    return md_table(["target", "measured", "status", "detail"],
                    [[t["target"], t["measured"], t["status"], t.get("detail", "")] for t in targets])


# ------------------------------------------------------------------------------------------- files


def write_csv(rows: list[dict], path: Path) -> None:
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})


def rows_with_machine(result: dict) -> list[dict]:
    """Rows plus the run's identity (commit, versions, CPU, threads), so a CSV stands on its own."""
    m = result["meta"]["machine"]
    extra = {"git_commit": m.get("git_commit"), "torch": m.get("torch"), "cpu": m.get("cpu"),
             "threads": m.get("torch_threads"), "timestamp": m.get("timestamp")}
    return [r | extra for r in result["rows"]]


def write_json(result: dict, path: Path) -> None:
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def machine_markdown(machine: dict) -> str:
    keys = ("cpu", "cpu_count", "cpus_available", "torch_threads", "device", "gpu", "platform", "python", "torch",
            "numpy", "linmix", "git_commit", "timestamp", "load_average_before", "load_average")
    return "\n".join(f"- {k}: `{machine[k]}`" for k in keys if k in machine)


def write_readme(out: Path, title: str, result: dict, body: str, files: list[str]) -> None:
    meta = result["meta"]
    text = [f"# {title}", "", "Made by:", "", "```", meta.get("command") or "(library call)", "```", "",
            "## Machine", "", machine_markdown(meta["machine"]), "", "## Config", "", "```json",
            json.dumps(meta["config"], indent=2, default=str), "```", "", "## Files", "",
            "\n".join(f"- `{f}`" for f in files), "", "## Results", "", body]
    (out / "README.md").write_text("\n".join(text))


def write_ops_outputs(result: dict, out: str | Path) -> list[Path]:
    """``ops.csv``, ``ops.json``, ``ops.md``, ``ops_time.png``, ``ops_memory.png`` and ``README.md``."""
    from linmix.bench.plots import plot_ops

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows_with_machine(result), out / "ops.csv")
    write_json(result, out / "ops.json")
    md = ops_markdown(result)
    (out / "ops.md").write_text("# linmix bench ops\n\n" + md)
    pngs = plot_ops(result, out)
    files = ["ops.csv", "ops.json", "ops.md"] + [p.name for p in pngs]
    write_readme(out, "linmix bench ops: operator scaling vs length", result, md, files)
    return [out / f for f in files] + [out / "README.md"]
