"""The targets file: every bench's targets parse; bad entries are clear errors; each check kind decides."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from linmix.bench.targets import CHECK_KEYS, DEFAULT_FILE, check_targets, load_targets

GOOD = """
[toy]
subject = "case"
x = "T"
"""


def _file(tmp_path, body: str):
    path = tmp_path / "targets.toml"
    path.write_text(GOOD + body)
    return path


def _target(**keys) -> str:
    return "[[toy.target]]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in keys.items())


BASE = dict(name="t", check="value", subject="a", metric="ms", op="<=", threshold=1.0)


@pytest.mark.parametrize("bench", ["ops", "decode", "train", "long"])
def test_the_packaged_file_has_every_bench(bench):
    targets = load_targets(bench).targets
    assert targets and all(t.check in CHECK_KEYS for t in targets)
    assert DEFAULT_FILE.name == "targets.toml"


@pytest.mark.parametrize("body, message", [
    (_target(**{k: v for k, v in BASE.items() if k != "metric"}), "lacks key"),
    (_target(**BASE, speed=3), "unknown key"),
    (_target(**BASE | {"check": "vibes"}), "unknown check"),
    (_target(**BASE | {"op": "=="}), "unknown op"),
    (_target(**BASE | {"check": "ratio"}), "lacks key"),  # a ratio needs its reference
    ("[toy.extra]\nx = 1\n", "unknown key"),
])
def test_bad_target_entries_are_value_errors(tmp_path, body, message):
    with pytest.raises(ValueError, match=message):
        load_targets("toy", _file(tmp_path, body))


def test_a_bench_without_a_table_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match=r"no \[nope\] table"):
        load_targets("nope", _file(tmp_path, ""))


ROWS = [{"case": c, "T": T, "ms": ms, "layers": layers}
        for c, layers, pts in (("a", "summation*3,attention", {16: 1.0, 32: 2.0, 64: 4.0}),
                               ("b", "attention*4", {16: 2.0, 32: 8.0, 64: 32.0}),
                               ("c", "summation*4", {16: None, 32: None, 64: None}))
        for T, ms in pts.items()]


@pytest.mark.parametrize("keys, status", [
    (dict(check="value", at=[16], op="<=", threshold=1.0), "met"),
    (dict(check="value", op="<=", threshold=3.0), "missed"),  # worst is 4.0 at T=64
    (dict(check="value", op=">=", threshold=2.0, **{"from": 32}), "met"),
    (dict(check="value", at=[128], op="<=", threshold=1.0), "n/a"),  # not measured
    (dict(check="ratio", reference="b", op="<=", threshold=0.5), "met"),  # a / b = 0.5, 0.25, 0.125
    (dict(check="ratio", reference="b", op="<", threshold=0.5), "missed"),
    (dict(check="growth", op="<=", threshold=4.0), "met"),  # 1 -> 4
    (dict(check="growth", at=[16, 32], op=">", threshold=2.0), "missed"),  # exactly 2
    (dict(check="slope", op="<=", threshold=1.1), "met"),  # slope 1 over T in [32, 64]
    (dict(check="slope", op="<=", threshold=0.9), "missed"),
    (dict(check="share", reference="b", op="<=", threshold=1.0, slack=0.0), "met"),  # 3 <= 30 x 1/4
    (dict(check="share", reference="b", op="<=", threshold=0.3, slack=0.0), "missed"),  # 3 > 0.3 x 7.5
    (dict(check="value", subject="c", op="<=", threshold=1.0), "n/a"),  # measured nothing
])
def test_each_check_kind_decides(tmp_path, keys, status):
    path = _file(tmp_path, _target(**BASE | keys))
    (result,) = check_targets("toy", ROWS, path)
    assert result["status"] == status, result
    assert set(result) == {"target", "measured", "status", "detail"}


def test_a_pattern_subject_makes_one_target_per_match(tmp_path):
    path = _file(tmp_path, _target(**BASE | dict(name="{subject} is quick", subject="?", exclude=["b"],
                                                 threshold=5.0)))
    results = check_targets("toy", ROWS, path)
    assert [(r["target"], r["status"]) for r in results] == [("a is quick", "met"), ("c is quick", "n/a")]


def test_a_metric_no_record_has_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="not a toy record column"):
        check_targets("toy", ROWS, _file(tmp_path, _target(**BASE | {"metric": "msec"})))


def test_a_missed_floor_target_says_by_how_much(tmp_path):
    path = _file(tmp_path, _target(**BASE | dict(at=[32], op=">=", threshold=3.0, unit="x")))
    (result,) = check_targets("toy", ROWS, path)
    assert result == {"target": "t", "measured": "2.00x", "status": "missed", "detail": "short by 1.50x"}


@pytest.mark.parametrize("bench", ["ops", "decode", "train"])
def test_the_file_reproduces_the_committed_verdicts(bench):
    """The targets once written in code, re-checked from the file on the committed results, agree."""
    committed = Path(__file__).resolve().parents[2] / "results" / bench / f"{bench}.json"
    if not committed.is_file():
        pytest.skip(f"no committed {committed}")
    result = json.loads(committed.read_text())
    old = {t["target"]: t["status"] for t in result["summary"]["targets"]}
    new = {t["target"]: t["status"] for t in check_targets(bench, result["rows"])}
    matched = sorted(set(old) & set(new))
    assert matched and {n: new[n] for n in matched} == {n: old[n] for n in matched}
