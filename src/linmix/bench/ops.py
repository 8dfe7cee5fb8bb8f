"""``linmix bench ops``: latency and memory of every mixer against attention and two floors, vs length.

For each length T of a doubling range and each case (:func:`linmix.bench.registry.select_cases`):

1. **memory**: one forward+backward in a fresh process (:func:`linmix.bench.timing.probe_memory`), peak
   extra memory over the state after building the layer and its input; the median of ``memory_repeats``
   such processes (the allocator's choices vary a little from run to run). Before each point the next peak is
   predicted from the case's measured points (local log-log slope; quadratic cases assume slope 2 after
   their first point); a case whose prediction, or measurement, exceeds ``memory_limit_mb`` stops there and
   the rows say so.
2. **time**: forward (``torch.no_grad``) and forward+backward (``y.backward(g)`` with a fixed random ``g``;
   gradients of the input and of every parameter), after warm-up, median of repeats. The cases of one
   length are timed round-robin (one call of each, then again), so background load on a shared machine
   hits them alike.

Derived per row: tokens/s, speedup over attention of the same mode (``attention_ms / ms``), the case's
own floor (its projections, see :mod:`linmix.bench.registry`) and its multiple of that floor. The report
(:mod:`linmix.bench.report`) adds the log-log slopes over the upper half of the range, the crossover length
where each mixer becomes faster than attention, and the issue's speed targets.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from linmix.bench.registry import (BASELINE, FLOOR_CLONE, FLOOR_LINEAR, OpCase, parse_modes, projection_count,
                                   select_cases)
from linmix.bench.timing import (load_average, machine_info, median, num_threads, probe_memory, resolve_device,
                                 time_call)

DEFAULT_LENGTHS = [256 * 2**i for i in range(7)]  # 256 ... 16384
QUICK_LENGTHS = [256, 512, 1024, 2048, 4096]
DTYPES = ("float32", "bfloat16")


def parse_lengths(spec: str | list[int]) -> list[int]:
    """``"256:16384"`` (doubling), ``"256,1024,4096"`` or a list -> sorted unique positive lengths."""
    if isinstance(spec, str):
        spec = spec.strip()
        if ":" in spec:
            lo_s, hi_s = spec.split(":", 1)
            try:
                lo, hi = int(lo_s), int(hi_s)
            except ValueError:
                raise ValueError(f"lengths range must look like 256:16384, got {spec!r}") from None
            if lo <= 0 or hi < lo:
                raise ValueError(f"lengths range needs 0 < start <= end, got {spec!r}")
            values, t = [], lo
            while t <= hi:
                values.append(t)
                t *= 2
        else:
            try:
                values = [int(s) for s in spec.split(",") if s.strip()]
            except ValueError:
                raise ValueError(f"lengths must be integers like 256,512 or a range 256:16384, "
                                 f"got {spec!r}") from None
    else:
        values = [int(v) for v in spec]
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"lengths must be positive integers, got {spec!r}")
    return sorted(set(values))


@dataclass
class OpsConfig:
    """Everything that decides what ``bench ops`` measures (recorded in every output)."""

    lengths: list[int] = field(default_factory=lambda: list(DEFAULT_LENGTHS))
    mixers: list[str] | None = None
    modes: str = "causal,bidir"
    batch_size: int = 1
    d_model: int = 256
    repeats: int = 7
    warmup: int = 2
    budget_s: float = 25.0
    memory: bool = True
    memory_repeats: int = 3
    memory_limit_mb: float = 8192.0
    device: str = "auto"
    dtype: str = "float32"
    seed: int = 0
    threads: int | None = None
    quick: bool = False

    def validate(self) -> None:
        if self.batch_size <= 0 or self.d_model <= 0:
            raise ValueError("batch size and d_model must be positive")
        if self.repeats <= 0 or self.memory_repeats <= 0:
            raise ValueError(f"repeats must be >= 1, got {self.repeats} (memory: {self.memory_repeats})")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.memory_limit_mb <= 0:
            raise ValueError("memory limit must be positive")
        parse_modes(self.modes)

    @classmethod
    def quick_preset(cls, **overrides) -> "OpsConfig":
        """Under a minute on a quiet 2-core CPU (about two on a busy one): 256 ... 4096, 3 repeats."""
        base = dict(lengths=list(QUICK_LENGTHS), repeats=3, warmup=1, budget_s=4.0, memory_repeats=1, quick=True)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


# ------------------------------------------------------------------------------------------ pieces


def autocast_context(device: torch.device, dtype: str):
    """bf16 autocast (weights and inputs stay float32, as in mixed-precision training) or nothing."""
    if dtype == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Point:
    """A case built at one length: the module, its input, and the two timed calls."""

    def __init__(self, case: OpCase, d_model: int, T: int, batch_size: int, device: torch.device,
                 dtype: str, seed: int) -> None:
        torch.manual_seed(seed)
        self.case = case
        self.device = device
        self.dtype = dtype
        self.module = case.build(d_model, T).to(device)
        self.n_proj = projection_count(self.module, d_model)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.x = torch.randn(batch_size, T, d_model, device=device, requires_grad=True)
        self.gy = torch.randn(batch_size, T, d_model, device=device)

    def forward(self) -> None:
        with torch.no_grad(), autocast_context(self.device, self.dtype):
            self.module(self.x)

    def forward_backward(self) -> None:
        with autocast_context(self.device, self.dtype):
            y = self.module(self.x)
        y.backward(self.gy.to(y.dtype))

    def clear_grads(self) -> None:
        self.x.grad = None
        for p in self.params:
            p.grad = None


def memory_job(case: dict, d_model: int, T: int, batch_size: int, device: str, dtype: str,
               seed: int) -> Callable[[], None]:
    """Fresh-process job: build the case at T, warm up on a short input, return the measured fwd+bwd."""
    dev = torch.device(device)
    point = Point(OpCase.from_dict(case), d_model, T, batch_size, dev, dtype, seed)
    short = min(T, 32)
    warm = Point(OpCase.from_dict(case), d_model, short, batch_size, dev, dtype, seed)
    warm.module = point.module
    warm.params = point.params
    warm.forward_backward()
    warm.clear_grads()
    point.clear_grads()
    del warm
    return point.forward_backward


def predict_memory(points: list[tuple[int, float]], T: int, quadratic: bool) -> float | None:
    """Extrapolate a case's peak memory to T from its measured ``(T, MiB)`` points (None: no data)."""
    pts = [(t, m) for t, m in points if m is not None and m > 0]
    if not pts:
        return None
    t1, m1 = pts[-1]
    if len(pts) >= 2:
        t0, m0 = pts[-2]
        slope = math.log(m1 / m0) / math.log(t1 / t0) if t1 != t0 else 1.0
        slope = min(max(slope, 1.0), 2.5)
    else:
        slope = 2.0 if quadratic else 1.0
    return m1 * (T / t1) ** slope


# --------------------------------------------------------------------------------------------- run


def run_ops(config: OpsConfig, progress: bool = True, command: str | None = None,
            log: Callable[[str], None] | None = None) -> dict:
    """Measure every case at every length; return ``{"meta", "rows", "summary"}`` (see module docstring)."""
    config.validate()
    with num_threads(config.threads):
        return _run_ops(config, progress=progress, command=command, log=log)


def _run_ops(config: OpsConfig, progress: bool = True, command: str | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    from linmix.bench.report import summarize_ops

    config.validate()
    load_before = load_average()
    device = resolve_device(config.device)
    modes = parse_modes(config.modes)
    cases = select_cases(config.mixers, modes)
    lengths = parse_lengths(config.lengths)
    say = log or (lambda msg: None)

    bar = _progress(total=2 * len(lengths) * len(cases), enabled=progress, desc="bench ops")
    mem_points: dict[str, list[tuple[int, float]]] = {c.label: [] for c in cases}
    stopped: dict[str, str] = {}
    rows: list[dict] = []
    try:
        for T in lengths:
            results: dict[str, dict] = {}
            # ---- memory, one fresh process per point
            for case in cases:
                bar.set_description(f"T={T} memory {case.label}")
                rec = results.setdefault(case.label, {"status": "ok", "note": ""})
                if case.label in stopped:
                    rec.update(status="skipped", note=stopped[case.label])
                    bar.update(1)
                    continue
                if config.memory:
                    predicted = predict_memory(mem_points[case.label], T, case.quadratic)
                    if predicted is not None and predicted > config.memory_limit_mb:
                        note = (f"stopped at T={T}: predicted peak {predicted:.0f} MiB > memory limit "
                                f"{config.memory_limit_mb:.0f} MiB")
                        stopped[case.label] = note
                        rec.update(status="skipped", note=note)
                        say(f"{case.label}: {note}")
                        bar.update(1)
                        continue
                    probes = []
                    for _ in range(config.memory_repeats):  # the allocator's choices vary a little per run
                        probe = probe_memory("linmix.bench.ops:memory_job",
                                             dict(case=case.to_dict(), d_model=config.d_model, T=T,
                                                  batch_size=config.batch_size, device=str(device),
                                                  dtype=config.dtype, seed=config.seed),
                                             device=device)
                        probes.append(probe)
                        if not probe.get("ok"):
                            break
                    if probe.get("ok"):
                        peaks = [float(p["peak_extra_mib"]) for p in probes]
                        mib = median(peaks)
                        rec.update(peak_mem_mib=mib, peak_mem_mib_runs=" ".join(f"{v:.1f}" for v in peaks),
                                   mem_method=probe["method"])
                        mem_points[case.label].append((T, mib))
                        if mib > config.memory_limit_mb:
                            note = (f"stopped after T={T}: measured peak {mib:.0f} MiB > memory limit "
                                    f"{config.memory_limit_mb:.0f} MiB")
                            stopped[case.label] = note
                            rec.update(status="over_limit", note=note)
                            say(f"{case.label}: {note}")
                    else:
                        note = f"memory probe failed at T={T}: {probe.get('error')}"
                        stopped[case.label] = note
                        rec.update(status="failed", note=note)
                        say(f"{case.label}: {note}")
                bar.update(1)
            # ---- time, round-robin over the cases of this length
            timed = [c for c in cases if results[c.label]["status"] == "ok"]
            bar.update(len(cases) - len(timed))
            _time_length(config, device, T, timed, results, bar)
            for case in cases:
                rows.append(_row(case, T, config, device, results[case.label]))
            say(_length_line(T, rows))
    finally:
        bar.close()

    _derive(rows)
    meta = {
        "benchmark": "ops",
        "command": command,
        "config": asdict(config) | {"lengths": lengths, "device": str(device)},
        "machine": machine_info(device) | {"load_average_before": load_before},
        "cases": [c.label for c in cases],
    }
    result = {"meta": meta, "rows": rows}
    result["summary"] = summarize_ops(rows, lengths)
    return result


def _time_length(config: OpsConfig, device: torch.device, T: int, cases: list[OpCase],
                 results: dict[str, dict], bar) -> None:
    points: dict[str, Point] = {}
    reps: dict[str, int] = {}
    times: dict[str, tuple[list[float], list[float]]] = {}
    for case in cases:
        bar.set_description(f"T={T} warm-up {case.label}")
        try:
            p = Point(case, config.d_model, T, config.batch_size, device, config.dtype, config.seed)
            est_f = est_b = 0.0
            for _ in range(max(1, config.warmup)):
                est_f = time_call(p.forward, device)
                est_b = time_call(p.forward_backward, device)
                p.clear_grads()
        except (RuntimeError, MemoryError) as err:  # e.g. an allocation failure: record, go on
            results[case.label].update(status="failed", note=f"{type(err).__name__}: {err}".splitlines()[0][:200])
            continue
        points[case.label] = p
        per_round = max(est_f + est_b, 1e-6)
        reps[case.label] = max(min(config.repeats, 3), min(config.repeats, int(config.budget_s / per_round)))
        times[case.label] = ([], [])
        results[case.label]["n_proj"] = p.n_proj
    rounds = max(reps.values(), default=0)
    for r in range(rounds):
        for case in cases:
            p = points.get(case.label)
            if p is None or r >= reps[case.label]:
                continue
            bar.set_description(f"T={T} time {case.label} ({r + 1}/{reps[case.label]})")
            tf, tb = times[case.label]
            tf.append(time_call(p.forward, device))
            tb.append(time_call(p.forward_backward, device))
            p.clear_grads()
            if r + 1 == reps[case.label]:
                bar.update(1)
    for label, (tf, tb) in times.items():
        results[label].update(fwd_ms=1e3 * median(tf), fwd_ms_min=1e3 * min(tf), fwd_bwd_ms=1e3 * median(tb),
                              fwd_bwd_ms_min=1e3 * min(tb), repeats=len(tb))
    for case in cases:
        if case.label not in points:
            bar.update(1)
    points.clear()


def _row(case: OpCase, T: int, config: OpsConfig, device: torch.device, rec: dict) -> dict:
    tokens = config.batch_size * T
    fwd, fb = rec.get("fwd_ms"), rec.get("fwd_bwd_ms")
    return {
        "case": case.label, "mixer": case.name, "mode": case.mode, "kind": case.kind, "T": T,
        "batch_size": config.batch_size, "d_model": config.d_model, "dtype": config.dtype, "device": str(device),
        "status": rec.get("status", "ok"), "note": rec.get("note", ""),
        "fwd_ms": fwd, "fwd_ms_min": rec.get("fwd_ms_min"), "fwd_bwd_ms": fb,
        "fwd_bwd_ms_min": rec.get("fwd_bwd_ms_min"), "repeats": rec.get("repeats"),
        "fwd_tokens_per_s": tokens / (fwd / 1e3) if fwd else None,
        "fwd_bwd_tokens_per_s": tokens / (fb / 1e3) if fb else None,
        "peak_mem_mib": rec.get("peak_mem_mib"), "peak_mem_mib_runs": rec.get("peak_mem_mib_runs"),
        "mem_method": rec.get("mem_method"),
        "n_proj": rec.get("n_proj"),
    }


def _derive(rows: list[dict]) -> None:
    """Add speedup over attention (same mode) and the multiple of each case's own projection floor."""
    by = {(r["case"], r["T"]): r for r in rows}
    for r in rows:
        T = r["T"]
        ref_mode = r["mode"] if r["mode"] in ("causal", "bidir") else "causal"
        attn = by.get((f"{BASELINE}/{ref_mode}", T)) or by.get((f"{BASELINE}/bidir", T))
        lin = by.get((FLOOR_LINEAR, T))
        clone = by.get((FLOOR_CLONE, T))
        for key in ("fwd_ms", "fwd_bwd_ms"):
            short = key[:-3]
            a = attn.get(key) if attn else None
            r[f"speedup_{short}"] = a / r[key] if a and r.get(key) else None
            lin_ms = lin.get(key) if lin else None
            clone_ms = clone.get(key) if clone else None
            n = r.get("n_proj")
            floor = None
            if r["kind"] != "floor" and n is not None:
                floor = n * lin_ms if (n > 0 and lin_ms) else clone_ms
            r[f"floor_{short}_ms"] = floor
            r[f"floor_multiple_{short}"] = r[key] / floor if floor and r.get(key) else None
        a_mem = attn.get("peak_mem_mib") if attn else None
        r["mem_vs_attention"] = r["peak_mem_mib"] / a_mem if a_mem and r.get("peak_mem_mib") is not None else None


def _length_line(T: int, rows: list[dict]) -> str:
    parts = []
    for r in rows:
        if r["T"] != T:
            continue
        if r.get("fwd_bwd_ms") is None:
            parts.append(f"{r['case']}={r['status']}")
        else:
            parts.append(f"{r['case']}={r['fwd_bwd_ms']:.1f}ms")
    return f"T={T}: " + ", ".join(parts)


def _progress(total: int, enabled: bool, desc: str):
    """A tqdm bar (stderr), or a silent stand-in with the same methods."""
    if enabled:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="pt", dynamic_ncols=True, leave=True)

    class _Silent:
        def update(self, n: int = 1) -> None: ...
        def set_description(self, desc: str) -> None: ...
        def close(self) -> None: ...

    return _Silent()
