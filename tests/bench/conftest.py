"""Tiny benchmark runs shared by the tests of tests/bench (each bench runs once per session)."""
from __future__ import annotations

import pytest

from linmix.bench.decode import DecodeConfig
from linmix.bench.long import LongConfig
from linmix.bench.ops import OpsConfig
from linmix.bench.recall import RecallConfig
from linmix.bench.train_speed import TrainConfig

#: the smallest configs that still exercise every code path (memory probes included)
TINY = {
    "ops": OpsConfig(lengths=[16, 32], mixers=["summation", "fnet"], repeats=1, warmup=1, d_model=16, budget_s=1.0,
                     memory_repeats=1, device="cpu", threads=1),
    "decode": DecodeConfig(positions=[8, 16], d_model=16, n_heads=2, vocab_size=11, new_tokens=3, repeats=1,
                           device="cpu", threads=1),
    "train": TrainConfig(lengths=[16, 32], models="attention,summation", d_model=16, n_heads=2, vocab_size=11,
                         tokens_per_step=64, steps=1, warmup=1, device="cpu", threads=1),
    "long": LongConfig(models="summation,attention", datasets="none", d_model=16, n_heads=2, passkey_train_len=16,
                       passkey_steps=1, batch_size=2, passkey_lengths=[16, 32], passkey_depths=[0.5, 1.0],
                       passkey_samples=1, device="cpu", threads=1),
    "recall": RecallConfig(mixers=["attention", "fnet"], hybrids=[], sizes="16x2", d_models=[16], vocab_size=32,
                           max_steps=2, eval_every=1, warmup_steps=1, val_examples=4, test_examples=4, lrs=[1e-3],
                           seeds=1, device="cpu", threads=1),
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
