"""``bench decode`` and ``bench train`` records on tiny sizes: what they measure, not how fast."""
from __future__ import annotations

import pytest

from linmix.bench.decode import DecodeConfig
from linmix.bench.train_speed import TrainConfig


def _by(rows, x_key, model):
    return {r[x_key]: r for r in rows if r["model"] == model}


def test_decode_rows_and_state_growth(tiny_result):
    rows = tiny_result("decode")["rows"]
    models = ("summation", "hybrid", "attention", "spectral", "spectral_implicit", "aggregation", "linear_attention")
    assert {(r["model"], r["position"]) for r in rows} == {(m, p) for m in models for p in (8, 16)}
    assert all(r["per_token_ms_mean"] >= r["per_token_ms_min"] for r in rows)
    assert all(r["per_token_ms"] > 0 and r["samples"] == 3 and r["generate_peak_mib"] is not None for r in rows)
    summ, att = _by(rows, "position", "summation"), _by(rows, "position", "attention")
    assert summ[8]["state_mib"] == summ[16]["state_mib"]  # O(D) state, whatever the position
    assert att[16]["state_mib"] > att[8]["state_mib"]  # the KV cache grows with the position
    growth = tiny_result("decode")["summary"]["models"]["summation"]["latency_ratio_last_first"]
    assert growth == pytest.approx(summ[16]["per_token_ms"] / summ[8]["per_token_ms"])


def test_continuous_decode_generates_past_max_len_of_a_length_free_model():
    from linmix.bench.decode import run

    cfg = DecodeConfig(positions=[4, 12, 40], d_model=16, n_heads=2, vocab_size=11, new_tokens=3, repeats=2,
                       device="cpu", threads=1, memory=False, positional="none", continuous=True,
                       models="free=summation(positions=sinusoidal)*2;tied=summation*2")
    rows = run(cfg, progress=False)
    free, tied = _by(rows, "position", "free"), _by(rows, "position", "tied")
    # length-free: built with max_len = the first position, then generated through 40 + 3 tokens in one call
    assert {r["max_len"] for r in free.values()} == {4}
    # a learned modulation table ties the model to max_len: it is built long enough for the whole run
    assert {r["max_len"] for r in tied.values()} == {40 + 3 + 1}
    assert all(r["samples"] == 2 * 3 for r in rows)  # new_tokens gaps after each position, per round
    assert free[4]["state_mib"] == free[40]["state_mib"]  # O(D) state at every position
    assert free[4]["prefill_first_token_ms"] is not None and free[40]["prefill_first_token_ms"] is None


def test_unknown_positional_is_a_value_error():
    with pytest.raises(ValueError, match="unknown positional 'alibi'"):
        DecodeConfig(positional="alibi").validate()


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


def test_match_params_sizes_each_model_to_the_attention_lm():
    from linmix.bench.train_speed import build_lm, model_widths, run
    from linmix.compare.sizing import count_params, within_budget

    cfg = TrainConfig(lengths=[16], d_model=32, n_heads=2, vocab_size=11, tokens_per_step=32, steps=1, warmup=0,
                      device="cpu", threads=1, memory=False, match_params=True,
                      models="attention=attention*2;small=aggregation*2")
    models = cfg.model_specs()
    widths = model_widths(cfg, models, 16)
    assert widths["attention"] == 32 and widths["small"] > 32  # aggregation has fewer weights per width
    target = count_params(build_lm(models["attention"], cfg, 16, 32))
    assert within_budget(count_params(build_lm(models["small"], cfg, 16, widths["small"])), target)
    rows = {r["model"]: r for r in run(cfg, progress=False)}
    assert rows["small"]["d_model"] == widths["small"] and within_budget(rows["small"]["params"], target)
    unmatched = model_widths(TrainConfig(d_model=32, n_heads=2, models=cfg.models), models, 16)
    assert unmatched == {"attention": 32, "small": 32}
