"""Benchmarks: operator scaling vs length (``ops``), decoding cost vs position (``decode``) and end-to-end
training throughput (``train``), each against attention, with CSV/JSON/markdown/PNG outputs.

Every benchmark runs the same way (:mod:`linmix.bench.runner`)::

    from linmix.bench import OpsConfig, run_bench, write_bench
    result = run_bench("ops", OpsConfig.quick_preset(mixers=["summation"]))
    write_bench(result, "results/ops")

Names are imported on first use, so importing a leaf module (``linmix.bench.timing``, ``.machine``,
``.memprobe``) does not import the benchmarks.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "BENCHES": "linmix.bench.runner", "run_bench": "linmix.bench.runner", "write_bench": "linmix.bench.runner",
    "OpsConfig": "linmix.bench.ops", "DecodeConfig": "linmix.bench.decode", "TrainConfig": "linmix.bench.train_speed",
    "check_targets": "linmix.bench.targets", "load_targets": "linmix.bench.targets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'linmix.bench' has no attribute {name!r}")
