"""``linmix bench ops``: latency and memory of every mixer against attention and two floors, vs length.

For each length T of a doubling range and each case (:func:`linmix.bench.registry.select_cases`):

1. **memory**: one forward+backward in a fresh process (:func:`linmix.bench.memprobe.probe_memory`), peak
   extra memory over the state after building the layer and its input; the median of ``memory_repeats``
   such processes (the allocator's choices vary a little from run to run). Before each point the next peak is
   predicted from the case's measured points (local log-log slope; quadratic cases assume slope 2 after
   their first point); a case whose prediction, or measurement, exceeds ``memory_limit_mb`` stops there and
   the records say so.
2. **time**: forward (``torch.no_grad``) and forward+backward (``y.backward(g)`` with a fixed random ``g``;
   gradients of the input and of every parameter), after warm-up, median of repeats. The cases of one
   length are timed round-robin (one call of each, then again), so background load on a shared machine
   hits them alike.

Derived per record: tokens/s, speedup over attention of the same mode (``attention_ms / ms``), the case's
own floor (its projections, see :mod:`linmix.bench.registry`) and its multiple of that floor. The report
(:mod:`linmix.bench.ops_report`) adds the log-log slopes and the crossover length with attention.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import ClassVar

import torch

from linmix.bench.base import BenchConfig
from linmix.bench.memprobe import probe_memory
from linmix.bench.ops_report import TITLE, markdown, plot, summarize  # noqa: F401  (the bench interface)
from linmix.bench.progress import Progress
from linmix.bench.registry import (BASELINE, FLOOR_CLONE, FLOOR_LINEAR, OpCase, parse_lengths, parse_modes,
                                   projection_count, select_cases)
from linmix.bench.timing import autocast_context, median, resolve_device, time_call

DEFAULT_LENGTHS = [256 * 2**i for i in range(7)]  # 256 ... 16384
QUICK_LENGTHS = [256, 512, 1024, 2048, 4096]
DTYPES = ("float32", "bfloat16")


@dataclass
class OpsConfig(BenchConfig):
    """Everything that decides what ``bench ops`` measures (recorded in every output)."""

    lengths: list[int] = field(default_factory=lambda: list(DEFAULT_LENGTHS))
    mixers: list[str] | None = None
    modes: str = "causal,bidir"
    batch_size: int = 1
    repeats: int = 7
    warmup: int = 2
    budget_s: float = 25.0
    memory_repeats: int = 3
    memory_limit_mb: float = 8192.0
    dtype: str = "float32"

    #: under a minute on a quiet 2-core CPU (about two on a busy one): 256 ... 4096, 3 repeats
    QUICK: ClassVar[dict] = dict(lengths=QUICK_LENGTHS, repeats=3, warmup=1, budget_s=4.0, memory_repeats=1)

    def validate(self) -> None:
        """``ValueError`` for a setting no run could use (before anything is built)."""
        super().validate()
        if self.batch_size <= 0:
            raise ValueError("batch size must be positive")
        if self.repeats <= 0 or self.memory_repeats <= 0:
            raise ValueError(f"repeats must be >= 1, got {self.repeats} (memory: {self.memory_repeats})")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.memory_limit_mb <= 0:
            raise ValueError("memory limit must be positive")
        parse_modes(self.modes)
        parse_lengths(self.lengths)

    def describe(self) -> dict:
        """The config as recorded, with the lengths resolved (``"256:4096"`` -> the list measured)."""
        return super().describe() | {"lengths": parse_lengths(self.lengths)}


Config = OpsConfig  # the bench interface (see linmix.bench.runner)


class Point:
    """A case built at one length: the module, its input, and the two timed calls."""

    def __init__(self, case: OpCase, cfg: OpsConfig, T: int, device: torch.device,
                 module: torch.nn.Module | None = None) -> None:
        torch.manual_seed(cfg.seed)
        self.device, self.dtype = device, cfg.dtype
        self.module = module if module is not None else case.build(cfg.d_model, T).to(device)
        self.n_proj = projection_count(self.module, cfg.d_model)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.x = torch.randn(cfg.batch_size, T, cfg.d_model, device=device, requires_grad=True)
        self.gy = torch.randn(cfg.batch_size, T, cfg.d_model, device=device)

    def forward(self) -> None:
        """The timed forward: no autograd graph, as in inference."""
        with torch.no_grad(), autocast_context(self.device, self.dtype):
            self.module(self.x)

    def forward_backward(self) -> None:
        """The timed training call: forward, then gradients of the input and every parameter."""
        with autocast_context(self.device, self.dtype):
            y = self.module(self.x)
        y.backward(self.gy.to(y.dtype))

    def clear_grads(self) -> None:
        """Drop the gradients, so no call accumulates into the last one's buffers."""
        self.x.grad = None
        for p in self.params:
            p.grad = None


def memory_job(case: dict, config: dict, T: int) -> Callable[[], None]:
    """Fresh-process job: build the case at T, warm up on a short input, return the measured fwd+bwd."""
    cfg = OpsConfig(**config)
    dev = torch.device(cfg.device)
    point = Point(OpCase.from_dict(case), cfg, T, dev)
    warm = Point(OpCase.from_dict(case), cfg, min(T, 32), dev, module=point.module)
    warm.forward_backward()
    warm.clear_grads()
    del warm
    return point.forward_backward


def predict_memory(points: list[tuple[int, float]], T: int, quadratic: bool) -> float | None:
    """Extrapolate a case's peak memory to T from its measured ``(T, MiB)`` points (None: no data)."""
    pts = [(t, m) for t, m in points if m is not None and m > 0]
    if not pts:
        return None
    t1, m1 = pts[-1]
    slope = 2.0 if quadratic else 1.0
    if len(pts) >= 2:
        t0, m0 = pts[-2]
        slope = min(max(math.log(m1 / m0) / math.log(t1 / t0), 1.0), 2.5) if t1 != t0 else 1.0
    return m1 * (T / t1) ** slope


# ------------------------------------------------------------------------------------------ memory


class MemoryGate:
    """Each case's measured peaks, and the cases stopped by the memory limit (with the reason)."""

    def __init__(self, config: OpsConfig, cases: list[OpCase], bar: Progress) -> None:
        self.config, self.bar = config, bar
        self.points: dict[str, list[tuple[int, float]]] = {c.label: [] for c in cases}
        self.stopped: dict[str, str] = {}

    def stop(self, case: OpCase, rec: dict, status: str, note: str) -> dict:
        """Stop ``case`` for the remaining lengths and mark this point's record."""
        self.stopped[case.label] = note
        self.bar.log(f"{case.label}: {note}")
        rec.update(status=status, note=note)
        return rec

    def measure(self, case: OpCase, T: int) -> dict:
        """The memory part of one point's record (``status`` ``ok`` unless it was stopped or failed)."""
        cfg, rec = self.config, {"status": "ok", "note": ""}
        if case.label in self.stopped:
            return rec | {"status": "skipped", "note": self.stopped[case.label]}
        if not cfg.memory:
            return rec
        predicted = predict_memory(self.points[case.label], T, case.quadratic)
        if predicted is not None and predicted > cfg.memory_limit_mb:
            return self.stop(case, rec, "skipped", f"stopped at T={T}: predicted peak {predicted:.0f} MiB > "
                                                   f"memory limit {cfg.memory_limit_mb:.0f} MiB")
        probes = self._probes(case, T)
        if not probes[-1].get("ok"):
            return self.stop(case, rec, "failed", f"memory probe failed at T={T}: {probes[-1].get('error')}")
        peaks = [float(p["peak_extra_mib"]) for p in probes]
        mib = median(peaks)
        rec.update(peak_mem_mib=mib, peak_mem_mib_runs=" ".join(f"{v:.1f}" for v in peaks),
                   mem_method=probes[-1]["method"])
        self.points[case.label].append((T, mib))
        if mib > cfg.memory_limit_mb:
            return self.stop(case, rec, "over_limit", f"stopped after T={T}: measured peak {mib:.0f} MiB > "
                                                      f"memory limit {cfg.memory_limit_mb:.0f} MiB")
        return rec

    def _probes(self, case: OpCase, T: int) -> list[dict]:
        """Up to ``memory_repeats`` fresh-process probes (the allocator's choices vary a little per run)."""
        probes = []
        for _ in range(self.config.memory_repeats):
            probes.append(probe_memory("linmix.bench.ops:memory_job",
                                       dict(case=case.to_dict(), config=asdict(self.config), T=T),
                                       device=self.config.device))
            if not probes[-1].get("ok"):
                break
        return probes


# -------------------------------------------------------------------------------------------- time


def _warm_up(config: OpsConfig, device: torch.device, T: int, case: OpCase, rec: dict) -> tuple | None:
    """Build the point and warm it up; ``(point, repeats)`` (within the time budget), None on failure."""
    try:
        p = Point(case, config, T, device)
        est = 0.0
        for _ in range(max(1, config.warmup)):
            est = time_call(p.forward, device) + time_call(p.forward_backward, device)
            p.clear_grads()
    except (RuntimeError, MemoryError) as err:  # e.g. an allocation failure: record, go on
        rec.update(status="failed", note=f"{type(err).__name__}: {err}".splitlines()[0][:200])
        return None
    rec["n_proj"] = p.n_proj
    return p, max(min(config.repeats, 3), min(config.repeats, int(config.budget_s / max(est, 1e-6))))


def time_length(config: OpsConfig, device: torch.device, T: int, cases: list[OpCase], records: dict[str, dict],
                bar: Progress) -> None:
    """Time the cases of one length round-robin and add ``fwd_ms``... to their records."""
    points = {}
    for case in cases:
        bar.step(f"T={T} warm-up {case.label}")
        points[case.label] = _warm_up(config, device, T, case, records[case.label])
    bar.update(sum(1 for p in points.values() if p is None))
    live = {label: pr for label, pr in points.items() if pr is not None}
    times = {label: ([], []) for label in live}
    for r in range(max((reps for _, reps in live.values()), default=0)):
        for label, (p, reps) in live.items():
            if r >= reps:
                continue
            bar.step(f"T={T} time {label} ({r + 1}/{reps})")
            times[label][0].append(time_call(p.forward, device))
            times[label][1].append(time_call(p.forward_backward, device))
            p.clear_grads()
            bar.update(int(r + 1 == reps))
    for label, (tf, tb) in times.items():
        records[label].update(fwd_ms=1e3 * median(tf), fwd_ms_min=1e3 * min(tf), fwd_bwd_ms=1e3 * median(tb),
                              fwd_bwd_ms_min=1e3 * min(tb), repeats=len(tb))


# --------------------------------------------------------------------------------------------- run


def run(config: OpsConfig, progress: bool = True) -> list[dict]:
    """Measure every case at every length; one record per (case, T) (see the module docstring)."""
    device = resolve_device(config.device)
    config = replace(config, device=str(device))  # the fresh-process jobs get the real device
    cases = select_cases(config.mixers, parse_modes(config.modes))
    lengths = parse_lengths(config.lengths)
    rows: list[dict] = []
    with Progress(2 * len(lengths) * len(cases), "bench ops", progress) as bar:
        gate = MemoryGate(config, cases, bar)
        for T in lengths:
            records = {}
            for case in cases:
                bar.step(f"T={T} memory {case.label}")
                records[case.label] = gate.measure(case, T)
                bar.update(1)
            timed = [c for c in cases if records[c.label]["status"] == "ok"]
            bar.update(len(cases) - len(timed))
            time_length(config, device, T, timed, records, bar)
            rows += [_row(c, T, config, records[c.label]) for c in cases]
            bar.log(_length_line(T, rows))
    _derive(rows)
    return rows


def _row(case: OpCase, T: int, config: OpsConfig, rec: dict) -> dict:
    tokens = config.batch_size * T
    fwd, fb = rec.get("fwd_ms"), rec.get("fwd_bwd_ms")
    return {
        "case": case.label, "mixer": case.name, "mode": case.mode, "kind": case.kind, "T": T,
        "batch_size": config.batch_size, "d_model": config.d_model, "dtype": config.dtype, "device": config.device,
        "status": rec.get("status", "ok"), "note": rec.get("note", ""),
        "fwd_ms": fwd, "fwd_ms_min": rec.get("fwd_ms_min"), "fwd_bwd_ms": fb,
        "fwd_bwd_ms_min": rec.get("fwd_bwd_ms_min"), "repeats": rec.get("repeats"),
        "fwd_tokens_per_s": tokens / (fwd / 1e3) if fwd else None,
        "fwd_bwd_tokens_per_s": tokens / (fb / 1e3) if fb else None,
        "peak_mem_mib": rec.get("peak_mem_mib"), "peak_mem_mib_runs": rec.get("peak_mem_mib_runs"),
        "mem_method": rec.get("mem_method"), "n_proj": rec.get("n_proj"),
    }


def _ratio(a, b) -> float | None:
    return a / b if a and b else None


def _derive(rows: list[dict]) -> None:
    """Add speedup over attention (same mode) and the multiple of each case's own projection floor."""
    by = {(r["case"], r["T"]): r for r in rows}
    for r in rows:
        mode = r["mode"] if r["mode"] in ("causal", "bidir") else "causal"
        attn = by.get((f"{BASELINE}/{mode}", r["T"])) or by.get((f"{BASELINE}/bidir", r["T"])) or {}
        lin, clone = by.get((FLOOR_LINEAR, r["T"]), {}), by.get((FLOOR_CLONE, r["T"]), {})
        for key in ("fwd_ms", "fwd_bwd_ms"):
            short, n = key[:-3], r.get("n_proj")
            r[f"speedup_{short}"] = _ratio(attn.get(key), r.get(key))
            floor = None
            if r["kind"] != "floor" and n is not None:
                floor = n * lin[key] if (n > 0 and lin.get(key)) else clone.get(key)
            r[f"floor_{short}_ms"] = floor
            r[f"floor_multiple_{short}"] = _ratio(r.get(key), floor)
        mem = r.get("peak_mem_mib")
        r["mem_vs_attention"] = mem / attn["peak_mem_mib"] if attn.get("peak_mem_mib") and mem is not None else None


def _length_line(T: int, rows: list[dict]) -> str:
    parts = [f"{r['case']}={r['status']}" if r.get("fwd_bwd_ms") is None else f"{r['case']}={r['fwd_bwd_ms']:.1f}ms"
             for r in rows if r["T"] == T]
    return f"T={T}: " + ", ".join(parts)
