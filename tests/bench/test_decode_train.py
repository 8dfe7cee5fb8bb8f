"""``bench decode`` and ``bench train`` records on tiny sizes: what they measure, not how fast."""
from __future__ import annotations

import pytest

from linmix.bench.decode import DecodeConfig
from linmix.bench.train_speed import TrainConfig


def _by(rows, x_key, model):
    return {r[x_key]: r for r in rows if r["model"] == model}


def test_decode_rows_and_state_growth(tiny_result):
    rows = tiny_result("decode")["rows"]
    models = ("summation", "hybrid", "attention", "spectral", "spectral_implicit")
    assert {(r["model"], r["position"]) for r in rows} == {(m, p) for m in models for p in (8, 16)}
    assert all(r["per_token_ms_mean"] >= r["per_token_ms_min"] for r in rows)
    assert all(r["per_token_ms"] > 0 and r["samples"] == 3 and r["generate_peak_mib"] is not None for r in rows)
    summ, att = _by(rows, "position", "summation"), _by(rows, "position", "attention")
    assert summ[8]["state_mib"] == summ[16]["state_mib"]  # O(D) state, whatever the position
    assert att[16]["state_mib"] > att[8]["state_mib"]  # the KV cache grows with the position
    growth = tiny_result("decode")["summary"]["models"]["summation"]["latency_ratio_last_first"]
    assert growth == pytest.approx(summ[16]["per_token_ms"] / summ[8]["per_token_ms"])


def test_train_rows_batch_and_speedup(tiny_result):
    rows = tiny_result("train")["rows"]
    assert {(r["model"], r["T"]) for r in rows} == {(m, T) for m in ("attention", "summation") for T in (16, 32)}
    assert all(r["tokens_per_s"] > 0 and r["batch_size"] == 64 // r["T"] and r["params"] > 0 for r in rows)
    assert all(r["peak_mem_mib"] is not None for r in rows)
    att, summ = _by(rows, "T", "attention"), _by(rows, "T", "summation")
    for T in (16, 32):
        assert att[T]["speedup_vs_attention"] == pytest.approx(1.0)
        assert summ[T]["speedup_vs_attention"] == pytest.approx(summ[T]["tokens_per_s"] / att[T]["tokens_per_s"])


@pytest.mark.parametrize("config, message", [
    (DecodeConfig(positions=[8], new_tokens=1), "new tokens"), (DecodeConfig(positions=[0]), "lengths"),
    (DecodeConfig(models="nope"), "unknown model"), (TrainConfig(lengths=[1]), "lengths"),
    (TrainConfig(dtype="int8"), "dtype"), (TrainConfig(steps=0), "steps"),
])
def test_bad_config_is_a_value_error(config, message):
    with pytest.raises(ValueError, match=message):
        config.validate()
