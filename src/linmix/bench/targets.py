"""The benchmark targets: read from a declarative file (``targets.toml``), checked against records.

The file says *what* is expected (subject, metric, comparison, threshold); this module only knows how each
kind of check turns records into one number:

* ``value``: the metric of the subject at the chosen lengths; the worst one is compared.
* ``ratio``: the subject's metric over the ``reference``'s at each chosen length; the worst is compared.
* ``growth``: the metric at the last chosen length over the first (``at = [a, b]``, default whole range).
* ``slope``: the log-log slope of the metric over the upper half of the measured range.
* ``share``: the subject's growth first -> last must stay within ``threshold`` x the reference's growth
  scaled by the subject's share of the reference's layers, plus ``slack`` (a hybrid's attention layers).

Each result is ``{"target", "measured", "status", "detail"}`` with status ``met``, ``missed`` or ``n/a``
(the run did not measure it). A target with a missing or unknown key is a ``ValueError`` naming it.
"""
from __future__ import annotations

import fnmatch
import operator
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from linmix.bench.stats import series, upper_slope

DEFAULT_FILE = Path(__file__).with_name("targets.toml")
OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
REQUIRED = ("name", "check", "subject", "metric", "op", "threshold")
OPTIONAL = ("unit", "format", "exclude")
#: per check kind: (extra required keys, extra optional keys)
CHECK_KEYS = {"value": ((), ("at", "from")), "ratio": (("reference",), ("at", "from")), "growth": ((), ("at",)),
              "slope": ((), ()), "share": (("reference", "slack"), ())}
BENCH_KEYS = ("subject", "x", "target")


@dataclass(frozen=True)
class Target:
    """One target of the file: the common keys, and the check's own keys in ``params``."""

    name: str
    check: str
    subject: str
    metric: str
    op: str
    threshold: float
    params: dict = field(default_factory=dict)

    def fmt(self, value: float) -> str:
        """A measured number as the target wants it shown (``format``, then ``unit``)."""
        return format(value, self.params.get("format", ".2f")) + self.params.get("unit", "")


@dataclass(frozen=True)
class TargetSet:
    """A benchmark's targets and the record columns their subjects and lengths refer to."""

    subject_key: str
    x_key: str
    targets: list[Target]


def _parse_target(bench: str, i: int, entry: dict) -> Target:
    where = f"[[{bench}.target]] #{i + 1} ({entry.get('name', 'no name')!r})"
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise ValueError(f"targets file: {where} lacks key(s) {missing}")
    if entry["check"] not in CHECK_KEYS:
        raise ValueError(f"targets file: {where} has unknown check {entry['check']!r}; known: {list(CHECK_KEYS)}")
    need, may = CHECK_KEYS[entry["check"]]
    missing = [k for k in need if k not in entry]
    unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL) - set(need) - set(may))
    if missing or unknown:
        raise ValueError(f"targets file: {where} lacks key(s) {missing} / has unknown key(s) {unknown}")
    if entry["op"] not in OPS:
        raise ValueError(f"targets file: {where} has unknown op {entry['op']!r}; known: {list(OPS)}")
    params = {k: v for k, v in entry.items() if k not in REQUIRED}
    return Target(entry["name"], entry["check"], entry["subject"], entry["metric"], entry["op"],
                  float(entry["threshold"]), params)


def load_targets(bench: str, path: str | Path | None = None) -> TargetSet:
    """The targets of ``bench`` from ``path`` (default: the packaged ``targets.toml``)."""
    path = Path(path) if path else DEFAULT_FILE
    with open(path, "rb") as f:
        data = tomllib.load(f)
    if bench not in data:
        raise ValueError(f"targets file {path} has no [{bench}] table (it has: {', '.join(data) or 'none'})")
    table = data[bench]
    unknown = sorted(set(table) - set(BENCH_KEYS))
    missing = [k for k in ("subject", "x") if k not in table]
    if unknown or missing:
        raise ValueError(f"targets file: [{bench}] lacks key(s) {missing} / has unknown key(s) {unknown}")
    targets = [_parse_target(bench, i, e) for i, e in enumerate(table.get("target", []))]
    return TargetSet(table["subject"], table["x"], targets)


# ---------------------------------------------------------------------------------------- checks


def _result(target: Target, measured: str, ok: bool | None, detail: str = "") -> dict:
    status = "n/a" if ok is None else ("met" if ok else "missed")
    return {"target": target.name, "measured": measured, "status": status, "detail": "" if ok else detail}


def _select(points: dict, params: dict) -> dict:
    """The points at the target's lengths (``at``, ``from``) that hold a number."""
    out = {x: v for x, v in sorted(points.items()) if v is not None}
    if "at" in params:
        out = {x: v for x, v in out.items() if x in params["at"]}
    if "from" in params:
        out = {x: v for x, v in out.items() if x >= params["from"]}
    return out


def shortfall(need: float, got: float) -> str:
    """``short by 1.25x`` (or ``short by 0.8%`` when within 5%)."""
    ratio = need / got
    return f"short by {100 * (ratio - 1):.1f}%" if ratio < 1.05 else f"short by {ratio:.2f}x"


def _compare_worst(target: Target, values: dict, x_key: str, what: str = "") -> dict:
    """Compare the worst of ``{x: value}`` (max for ``<``, min for ``>``) with the threshold."""
    if not values:
        return _result(target, "n/a", None)
    pick = max if target.op.startswith("<") else min
    x, v = pick(values.items(), key=lambda p: p[1])
    ok = OPS[target.op](v, target.threshold)
    if len(values) == 1:
        big = target.op.startswith(">") and v > 0
        return _result(target, target.fmt(v), ok, shortfall(target.threshold, v) if big else "")
    measured = what + ", ".join(f"{target.fmt(val)}@{k}" for k, val in values.items())
    return _result(target, measured, ok, f"worst {target.fmt(v)} at {x_key}={x}")


def _check_value(t: Target, rows: list[dict], ts: TargetSet, subject: str) -> dict:
    values = _select(series(rows, ts.subject_key, subject, ts.x_key, t.metric), t.params)
    return _compare_worst(t, values, ts.x_key)


def _check_ratio(t: Target, rows: list[dict], ts: TargetSet, subject: str) -> dict:
    mine = _select(series(rows, ts.subject_key, subject, ts.x_key, t.metric), t.params)
    ref = series(rows, ts.subject_key, t.params["reference"], ts.x_key, t.metric)
    ratios = {x: v / ref[x] for x, v in mine.items() if ref.get(x)}
    return _compare_worst(t, ratios, ts.x_key, f"ratio to {t.params['reference']}: ")


def _ends(points: dict, params: dict) -> tuple | None:
    """``(x0, v0, x1, v1)``: the first and last point (``at = [a, b]`` picks them), None without both."""
    values = _select(points, {"at": params["at"]} if "at" in params else {})
    if len(values) < 2:
        return None
    (x0, v0), (x1, v1) = list(values.items())[0], list(values.items())[-1]
    return x0, v0, x1, v1


def _check_growth(t: Target, rows: list[dict], ts: TargetSet, subject: str) -> dict:
    ends = _ends(series(rows, ts.subject_key, subject, ts.x_key, t.metric), t.params)
    if ends is None or not ends[1]:
        return _result(t, "n/a", None)
    x0, v0, x1, v1 = ends
    detail = f"{v0:.3g} at {ts.x_key}={x0} -> {v1:.3g} at {ts.x_key}={x1}"
    return _result(t, t.fmt(v1 / v0), OPS[t.op](v1 / v0, t.threshold), detail)


def _check_slope(t: Target, rows: list[dict], ts: TargetSet, subject: str) -> dict:
    lengths = sorted({r[ts.x_key] for r in rows})
    slope = upper_slope(series(rows, ts.subject_key, subject, ts.x_key, t.metric), lengths)
    return _result(t, "n/a" if slope is None else t.fmt(slope), None if slope is None else
                   OPS[t.op](slope, t.threshold))


def _layer_share(rows: list[dict], ts: TargetSet, subject: str, reference: str) -> float:
    """The subject's layers of the reference's kind, over the reference's layer count (1 of 4: 0.25)."""
    from linmix.bench.registry import layer_names

    def layers(name: str) -> list[str]:
        return layer_names(next(r["layers"] for r in rows if r[ts.subject_key] == name))

    kinds = set(layers(reference))
    return sum(1 for n in layers(subject) if n in kinds) / len(layers(reference))


def _check_share(t: Target, rows: list[dict], ts: TargetSet, subject: str) -> dict:
    ref = t.params["reference"]
    mine = _ends(series(rows, ts.subject_key, subject, ts.x_key, t.metric), {})
    theirs = _ends(series(rows, ts.subject_key, ref, ts.x_key, t.metric), {})
    if mine is None or theirs is None or (mine[0], mine[2]) != (theirs[0], theirs[2]):
        return _result(t, "n/a", None)
    growth = mine[3] - mine[1]
    share = (theirs[3] - theirs[1]) * _layer_share(rows, ts, subject, ref)
    ok = OPS[t.op](growth, t.threshold * max(share, 0.0) + float(t.params["slack"]))
    return _result(t, f"{growth:+.2f} vs {ref} share {share:+.2f}", ok,
                   f"{ts.x_key}={mine[0]} -> {mine[2]}")


CHECKS = {"value": _check_value, "ratio": _check_ratio, "growth": _check_growth, "slope": _check_slope,
          "share": _check_share}


def _subjects(t: Target, rows: list[dict], key: str) -> list[str]:
    """The subjects a target covers: itself, or every match of its pattern minus ``exclude``."""
    if not any(c in t.subject for c in "*?["):
        return [t.subject]
    found = dict.fromkeys(r[key] for r in rows if fnmatch.fnmatchcase(str(r[key]), t.subject))
    return [s for s in found if not any(fnmatch.fnmatchcase(s, p) for p in t.params.get("exclude", []))]


def check_targets(bench: str, rows: list[dict], path: str | Path | None = None) -> list[dict]:
    """Check every target of ``bench`` against its records (``ValueError`` for a metric no record has).

    A target's name may say ``{subject}``, ``{first}`` and ``{last}`` (the run's shortest and longest length).
    """
    ts = load_targets(bench, path)
    rows = [r for r in rows if r.get("status") != "not run"]  # a planned point not run yet measures nothing
    columns = set().union(*(r.keys() for r in rows)) if rows else set()
    xs = sorted({r[ts.x_key] for r in rows})
    out = []
    measured = {r[ts.subject_key] for r in rows}
    for t in ts.targets:
        subjects = _subjects(t, rows, ts.subject_key)
        if rows and t.metric not in columns and any(s in measured for s in subjects):
            raise ValueError(f"target {t.name!r}: metric {t.metric!r} is not a {bench} record column")
        for subject in subjects:
            res = CHECKS[t.check](t, rows, ts, subject)
            words = {"subject": subject, "first": xs[0] if xs else "?", "last": xs[-1] if xs else "?"}
            out.append(res | {"target": t.name.format(**words)})
    return out
