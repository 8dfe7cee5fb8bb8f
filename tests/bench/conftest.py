"""Tiny benchmark runs shared by the tests of tests/bench (each bench runs once per session)."""
from __future__ import annotations

import pytest

from linmix.bench.decode import DecodeConfig
from linmix.bench.ops import OpsConfig
from linmix.bench.train_speed import TrainConfig

#: the smallest configs that still exercise every code path (memory probes included)
TINY = {
    "ops": OpsConfig(lengths=[16, 32], mixers=["summation", "fnet"], repeats=1, warmup=1, d_model=16, budget_s=1.0,
                     memory_repeats=1, device="cpu", threads=1),
    "decode": DecodeConfig(positions=[8, 16], d_model=16, n_heads=2, vocab_size=11, new_tokens=3, repeats=1,
                           device="cpu", threads=1),
    "train": TrainConfig(lengths=[16, 32], models="attention,summation", d_model=16, n_heads=2, vocab_size=11,
                         tokens_per_step=64, steps=1, warmup=1, device="cpu", threads=1),
}


@pytest.fixture(scope="session")
def tiny_result():
    """``tiny_result(name)``: the result of the bench's tiny run (run on first use, then cached)."""
    from linmix.bench.runner import run_bench

    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            cache[name] = run_bench(name, TINY[name], progress=False, command=f"linmix bench {name} --tiny")
        return cache[name]

    return get
