"""The leaf modules (timers, machine description, memory probe) import no benchmark, and do their jobs."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from linmix.bench import machine, timing

BENCH_MODULES = ("linmix.bench.ops", "linmix.bench.decode", "linmix.bench.train_speed")


CHECKED = {"linmix.bench.timing": [], "linmix.bench.machine": [], "linmix.bench.memprobe": [],
           "linmix.bench.runner": [],
           "linmix.bench.train_speed": ["linmix.bench.train_speed"]}  # control: the check does see a bench

#: one interpreter imports torch and linmix once, then a forked child per module imports it and reports
SCRIPT = """
import importlib, json, os, sys
import torch, linmix
for module in sys.argv[1:]:
    r, w = os.pipe()
    if os.fork() == 0:
        importlib.import_module(module)
        os.write(w, json.dumps([m for m in %r if m in sys.modules]).encode())
        os._exit(0)
    os.close(w)
    print(module, os.fdopen(r).read())
    os.wait()
""" % (BENCH_MODULES,)


@pytest.fixture(scope="module")
def imported_benches() -> dict[str, list[str]]:
    """Module -> the bench modules a fresh process holds after importing it."""
    done = subprocess.run([sys.executable, "-c", SCRIPT, *CHECKED], capture_output=True, text=True, timeout=120,
                          check=True)
    return {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()}


@pytest.mark.parametrize("module", list(CHECKED))
def test_leaf_modules_import_no_bench(imported_benches, module):
    assert imported_benches[module] == CHECKED[module]


def test_time_repeats_stops_at_the_budget_but_keeps_the_minimum():
    calls = []
    times = timing.time_repeats(lambda: calls.append(1), torch.device("cpu"), repeats=50, warmup=2, budget_s=0.0,
                                min_repeats=3)
    assert len(times) == 3 and len(calls) == 5 and all(t >= 0 for t in times)
    assert timing.median([3.0, 1.0, 2.0]) == 2.0


def test_num_threads_is_restored():
    before = torch.get_num_threads()
    with timing.num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_machine_info_names_the_run(monkeypatch):
    monkeypatch.setenv("LINMIX_GIT_COMMIT", "abc123")
    info = machine.machine_info("cpu")
    assert info["git_commit"] == "abc123" and info["torch"] == torch.__version__ and info["device"] == "cpu"


@pytest.mark.parametrize("packed", [False, True])
def test_git_commit_reads_loose_and_packed_refs(tmp_path, monkeypatch, packed):
    monkeypatch.delenv("LINMIX_GIT_COMMIT", raising=False)
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    if packed:
        (git / "packed-refs").write_text("# pack-refs\nfeed01 refs/heads/main\n")
    else:
        (git / "refs" / "heads" / "main").write_text("feed01\n")
    (tmp_path / "sub").mkdir()
    assert machine.git_commit(tmp_path / "sub") == "feed01"
