"""How every benchmark runs: config -> records -> summary and targets -> shared writers -> plots.

A benchmark module (:data:`BENCHES`) provides

* ``Config``: a dataclass with ``validate()``, ``describe() -> dict`` (what the outputs record) and
  ``quick_preset(**overrides)``;
* ``run(config, progress=True) -> list[dict]``: the measured records (plain dicts, one per point);
* ``summarize(records, config) -> dict``: derived numbers (slopes, ratios) for the report;
* ``markdown(result) -> str`` and ``plot(result, out) -> list[Path]``; ``TITLE`` for the README.

:func:`run_bench` adds what every result carries (the command as run, the machine, the config, the targets
of ``targets.toml`` checked against the records) and :func:`write_bench` writes the files.
"""
from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from linmix.bench.machine import load_average, machine_info
from linmix.bench.report import write_outputs
from linmix.bench.targets import check_targets
from linmix.bench.timing import num_threads, resolve_device

#: benchmark name (as in ``linmix bench NAME`` and the output file names) -> its module
BENCHES = {"ops": "linmix.bench.ops", "decode": "linmix.bench.decode", "train": "linmix.bench.train_speed",
           "long": "linmix.bench.long", "recall": "linmix.bench.recall"}


def bench_module(name: str) -> ModuleType:
    """The module of benchmark ``name`` (``ValueError`` listing the known ones)."""
    if name not in BENCHES:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHES)}")
    return importlib.import_module(BENCHES[name])


def run_bench(name: str, config, progress: bool = True, command: str | None = None,
              targets: str | Path | None = None) -> dict:
    """Validate ``config``, measure, summarise and check the targets; ``{"meta", "rows", "summary"}``."""
    bench = bench_module(name)
    config.validate()
    device = resolve_device(config.device)
    config = replace(config, device=str(device))
    load_before = load_average()
    with num_threads(config.threads):
        rows = bench.run(config, progress=progress)
        machine = machine_info(device) | {"load_average_before": load_before}
    summary = bench.summarize(rows, config)
    summary["targets"] = check_targets(name, rows, targets)
    meta = {"benchmark": name, "command": command, "config": config.describe(), "machine": machine}
    return {"meta": meta, "rows": rows, "summary": summary}


def write_bench(result: dict, out: str | Path) -> list[Path]:
    """Every output file of a result (see :func:`linmix.bench.report.write_outputs`)."""
    bench = bench_module(result["meta"]["benchmark"])
    return write_outputs(result, out, bench.TITLE, bench.markdown(result), lambda folder: bench.plot(result, folder))
