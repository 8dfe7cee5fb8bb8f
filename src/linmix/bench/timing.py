"""Timers for the benchmarks: device choice, thread count, synchronised wall-clock calls and medians.

A callable is warmed up, then called ``repeats`` times; each call is bracketed by a device synchronisation
(CUDA) and timed with ``time.perf_counter``; the median is reported (the minimum beside it). This module is
a leaf: it imports no benchmark, so every benchmark (and the fresh-process memory probe) can import it.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable

import torch


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; ``ValueError`` for an unavailable CUDA."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch.cuda.is_available() is False")
    return dev


@contextlib.contextmanager
def num_threads(n: int | None):
    """Run with ``n`` intra-op threads (``None``: unchanged), restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def autocast_context(device: torch.device, dtype: str):
    """bf16 autocast (weights and inputs stay float32, as in mixed-precision training) or nothing."""
    if dtype == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (no-op on the CPU), so a timer sees the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes, device work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    """The median (NaN for no values): robust to the odd slow call a busy machine adds."""
    return float(statistics.median(values)) if values else float("nan")


def time_repeats(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1,
                 budget_s: float | None = None, min_repeats: int = 3) -> list[float]:
    """Warm up, then time ``repeats`` calls (fewer, but at least ``min_repeats``, past ``budget_s``)."""
    for _ in range(max(0, warmup)):
        time_call(fn, device)
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        times.append(time_call(fn, device))
        if budget_s is not None and len(times) >= min_repeats and time.perf_counter() - start > budget_s:
            break
    return times
