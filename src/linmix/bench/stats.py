"""Numbers the reports derive from records: log-log slopes, the upper half of a range, crossovers.

* **slope**: least-squares fit of ``log(value)`` on ``log(T)`` over the upper half of the measured range
  (the lengths ``T >= sqrt(T_min T_max)``), where constant overheads have faded: 1 is linear, 2 quadratic.
* **crossover**: the shortest length from which a mixer stays faster than attention for every longer
  measured length, interpolated on the log-log speedup curve between the last slower and the first faster
  length. ``< T_min`` when it is faster everywhere; ``None`` when it never is.
* **best_lr**: the learning rate a grid reports, among those with the most seeds run.
"""
from __future__ import annotations

import math
import statistics


def loglog_slope(xs: list[float], ys: list[float | None]) -> float | None:
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
    ls = sorted(set(lengths))
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


def series(rows: list[dict], subject_key: str, subject: str, x_key: str, metric: str) -> dict:
    """``{x: value}`` of one subject's records (``None`` values kept: the record exists, the number not)."""
    return {r[x_key]: r.get(metric) for r in rows if r.get(subject_key) == subject}


def upper_slope(points: dict, lengths: list[int]) -> float | None:
    """The log-log slope of ``{x: value}`` over the upper half of ``lengths``."""
    upper = upper_half(lengths)
    xs = [x for x in sorted(points) if x in upper]
    return loglog_slope(xs, [points[x] for x in xs])


def best_lr(by_lr: dict[float, list[dict]], score: dict[float, float]) -> float:
    """The reported learning rate: among those with the most seeds run, the best mean accuracy (fewer steps on a tie).

    On a complete grid every LR has every seed and this is the plain best mean. On a partial one (LRs searched on
    seed 0, more seeds at the chosen one) a single lucky seed cannot outrank a mean over three.
    """
    most = max(len(rs) for rs in by_lr.values())
    return max((lr for lr, rs in by_lr.items() if len(rs) == most),
               key=lambda lr: (score[lr], -statistics.fmean(r["steps"] for r in by_lr[lr])))
