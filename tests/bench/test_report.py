"""The shared writers (CSV, JSON, markdown tables, README, the file set) and the progress helper."""
from __future__ import annotations

import csv
import json

import pytest

from linmix.bench.progress import Progress
from linmix.bench.report import md_table, pivot, targets_markdown, write_csv, write_outputs

ROWS = [{"case": "a", "T": 16, "ms": 1.5, "status": "ok"}, {"case": "a", "T": 32, "ms": None, "status": "skipped"},
        {"case": "b", "T": 16, "ms": None, "status": "ok", "note": "x"}]


def test_csv_has_every_column_once_and_reads_back(tmp_path):
    write_csv(ROWS, tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as f:
        back = list(csv.DictReader(f))
    assert list(back[0]) == ["case", "T", "ms", "status", "note"]
    assert [r["ms"] for r in back] == ["1.5", "", ""] and back[2]["note"] == "x"


def test_pivot_shows_values_and_why_a_value_is_missing():
    table = pivot(ROWS, "case", "T", "ms", lambda v: f"{v:.1f}", prefix="T=")
    assert table.splitlines() == ["| case | T=16 | T=32 |", "|---|---|---|", "| a | 1.5 | skipped |", "| b | - |  |"]


def test_targets_table_lists_status_and_detail():
    text = targets_markdown([{"target": "fast", "measured": "2x", "status": "missed", "detail": "short"}])
    assert text.splitlines()[-1] == "| fast | 2x | missed | short |"
    assert md_table(["a"], [[None]]).splitlines()[-1] == "|  |"


def test_write_outputs_writes_the_bench_file_set(tmp_path):
    result = {"meta": {"benchmark": "toy", "command": "linmix bench toy --x 'a b'", "config": {"n": 1},
                       "machine": {"cpu": "c", "torch": "t", "git_commit": "g"}},
              "rows": ROWS, "summary": {"targets": []}}

    def plot(out):
        (out / "toy.png").write_bytes(b"png")
        return [out / "toy.png"]

    files = write_outputs(result, tmp_path, "toy title", "the tables\n", plot)
    assert [f.name for f in files] == ["toy.csv", "toy.json", "toy.md", "toy.png", "README.md"]
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# toy title") and "linmix bench toy --x 'a b'" in readme and "- `toy.png`" in readme
    assert json.loads((tmp_path / "toy.json").read_text())["rows"][0]["ms"] == 1.5
    with open(tmp_path / "toy.csv") as f:
        assert next(csv.DictReader(f))["git_commit"] == "g"  # a CSV names the commit it measured


@pytest.mark.parametrize("enabled", [False, True])
def test_progress_logs_to_stderr_with_or_without_a_bar(capsys, enabled):
    with Progress(2, "toy", enabled=enabled) as bar:
        bar.step("one")
        bar.update(2)
        bar.log("note for the user")
    err = capsys.readouterr().err
    assert "note for the user" in err and (("2/2" in err) == enabled)
