"""The declarative case list and the report arithmetic (slopes, crossovers, targets) on synthetic rows."""
from __future__ import annotations

import math

import pytest

import linmix
from linmix.bench.ops import parse_lengths, predict_memory
from linmix.bench.registry import (DECODE_MODELS, FLOOR_CLONE, FLOOR_LINEAR, TRAIN_MODELS, parse_models,
                                   projection_count, select_cases)
from linmix.bench.report import crossover, loglog_slope, ops_targets, upper_half


def test_cases_always_hold_floors_and_the_attention_baseline():
    labels = [c.label for c in select_cases(["summation"])]
    assert labels[:4] == [FLOOR_CLONE, FLOOR_LINEAR, "attention/causal", "attention/bidir"]
    assert labels[4:] == ["summation/causal", "summation/bidir"]


def test_every_registered_mixer_is_a_case_and_fnet_has_no_causal_one():
    labels = {c.label for c in select_cases()}
    for name in linmix.MIXERS:
        assert f"{name}/bidir" in labels
    assert "fnet/causal" not in labels and "summation/causal" in labels


def test_unknown_mixer_is_a_value_error_listing_the_names():
    with pytest.raises(ValueError, match="registered mixers are"):
        select_cases(["summaton"])


def test_projection_count_is_the_mixers_own_floor():
    assert projection_count(linmix.build_mixer("summation", 16, 8), 16) == 2
    assert projection_count(linmix.build_mixer("aggregation", 16, 8), 16) == 1
    assert projection_count(linmix.build_mixer("attention", 16, 8), 16) == 4
    assert projection_count(linmix.build_mixer("fnet", 16, 8, causal=False), 16) == 0


def test_parse_lengths_and_models():
    assert parse_lengths("256:2048") == [256, 512, 1024, 2048]
    assert parse_lengths("64,16,16") == [16, 64]
    for bad in ("0:8", "a,b", "8:4"):
        with pytest.raises(ValueError):
            parse_lengths(bad)
    assert parse_models("summation,attention", DECODE_MODELS) == {"summation": "summation*4",
                                                                   "attention": "attention*4"}
    assert parse_models("mine=summation*2", TRAIN_MODELS) == {"mine": "summation*2"}
    with pytest.raises(ValueError, match="unknown model"):
        parse_models("nope", TRAIN_MODELS)


def test_loglog_slope_recovers_powers():
    xs = [256, 512, 1024, 2048]
    assert loglog_slope(xs, [3 * x for x in xs]) == pytest.approx(1.0)
    assert loglog_slope(xs, [x * x / 7 for x in xs]) == pytest.approx(2.0)
    assert loglog_slope([256], [1.0]) is None
    assert upper_half([256 * 2**i for i in range(7)]) == [2048, 4096, 8192, 16384]
    assert upper_half([16, 32]) == [16, 32]


def test_crossover_interpolates_on_the_log_log_curve():
    lengths = [256, 512, 1024, 2048]
    attn = [1.0, 2.0, 4.0, 8.0]
    mixer = [4.0, 4.0, 2.0, 1.0]  # speedup 0.25, 0.5, 2, 8: crosses between 512 and 1024
    out = crossover(lengths, mixer, attn)
    assert 512 < out["T"] < 1024
    assert math.isclose(out["T"], 2 ** 9.5, rel_tol=1e-9)  # log speedup -log 2 .. +log 2: halfway
    assert crossover(lengths, [0.5] * 4, attn)["text"].startswith("< 256")
    assert crossover(lengths, [100.0] * 4, attn)["T"] is None


def test_memory_prediction_extrapolates_the_measured_slope():
    assert predict_memory([], 1024, True) is None
    assert predict_memory([(256, 10.0)], 512, True) == pytest.approx(40.0)  # quadratic guess
    assert predict_memory([(256, 10.0)], 512, False) == pytest.approx(20.0)
    assert predict_memory([(256, 10.0), (512, 20.0)], 2048, True) == pytest.approx(80.0)


def test_targets_are_checked_against_rows_and_na_without_data():
    rows = []
    for T, s_ms, a_ms in ((512, 1.0, 4.0), (4096, 10.0, 130.0), (16384, 50.0, 2000.0)):
        rows.append({"case": "summation/causal", "T": T, "speedup_fwd_bwd": a_ms / s_ms,
                     "floor_multiple_fwd_bwd": 1.1, "fwd_bwd_ms": s_ms, "peak_mem_mib": 100.0})
        rows.append({"case": "attention/causal", "T": T, "speedup_fwd_bwd": 1.0, "fwd_bwd_ms": a_ms,
                     "peak_mem_mib": 180.0})
    targets = {t["target"]: t for t in ops_targets(rows, [512, 4096, 16384], {})}
    assert targets["summation causal >= 3.5x attention at T=512"]["status"] == "met"
    assert targets["summation causal >= 12x attention at T=4096"]["status"] == "met"
    assert targets["summation causal >= 35x attention at T=16384"]["status"] == "met"
    assert targets["summation causal within 1.15x of its projection floor for T >= 4096"]["status"] == "met"
    assert targets["summation causal peak memory at T=16384 <= attention's"]["status"] == "met"
    assert targets["spectral causal >= 8x attention at T=8192"]["status"] == "n/a"
