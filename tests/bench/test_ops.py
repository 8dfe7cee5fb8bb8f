"""``bench ops`` records on a tiny range (timings are not asserted: they are the benchmark's job)."""
from __future__ import annotations

import pytest

import linmix.bench.ops as ops
from linmix.bench.ops import OpsConfig, predict_memory


def _row(result, case, T=None):
    return next(r for r in result["rows"] if r["case"] == case and (T is None or r["T"] == T))


def test_rows_cover_every_case_and_length(tiny_result):
    labels = {(r["case"], r["T"]) for r in tiny_result("ops")["rows"]}
    cases = ("floor:clone", "floor:linear", "attention/causal", "attention/bidir", "summation/causal",
             "summation/bidir", "fnet/bidir")
    assert labels == {(c, T) for c in cases for T in (16, 32)}  # fnet has no causal form


def test_rows_carry_times_memory_ratios_and_floors(tiny_result):
    result = tiny_result("ops")
    for r in result["rows"]:
        assert r["status"] == "ok" and r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0, r
        assert r["fwd_bwd_tokens_per_s"] == pytest.approx(r["T"] / (r["fwd_bwd_ms"] / 1e3))
        assert r["peak_mem_mib"] is not None and r["peak_mem_mib"] >= 0
    assert _row(result, "attention/causal")["speedup_fwd_bwd"] == pytest.approx(1.0)
    s = _row(result, "summation/causal")
    assert s["n_proj"] == 2
    assert s["floor_fwd_bwd_ms"] == pytest.approx(2 * _row(result, "floor:linear", s["T"])["fwd_bwd_ms"])
    fnet = _row(result, "fnet/bidir")
    assert fnet["floor_fwd_bwd_ms"] == pytest.approx(_row(result, "floor:clone", fnet["T"])["fwd_bwd_ms"])


def test_summary_has_slopes_and_crossovers(tiny_result):
    cases = tiny_result("ops")["summary"]["cases"]
    assert cases["summation/causal"]["slope_fwd_bwd"] is not None
    assert "crossover_fwd_bwd" in cases["summation/causal"] and "crossover_fwd_bwd" not in cases["attention/bidir"]


def _fake_probe(mib_at):
    def probe(target, kwargs, device="cpu", timeout_s=0):
        return {"ok": True, "peak_extra_mib": mib_at(kwargs["case"]["name"], kwargs["T"]), "method": "fake"}
    return probe


@pytest.mark.parametrize("mib_at, limit, status, note", [
    (lambda name, T: 100.0 if name == "attention" else 1.0, 50, "over_limit", "measured peak 100 MiB"),
    (lambda name, T: 10.0, 30, "skipped", "predicted peak 40 MiB"),  # 10 MiB x (32/16)^2: stopped before it runs
])
def test_memory_limit_stops_attention_and_says_so(monkeypatch, mib_at, limit, status, note):
    monkeypatch.setattr(ops, "probe_memory", _fake_probe(mib_at))
    cfg = OpsConfig(lengths=[16, 32], mixers=["aggregation"], modes="causal", repeats=1, warmup=1, d_model=16,
                    memory_limit_mb=limit, device="cpu", threads=1)
    result = {"rows": ops.run(cfg, progress=False)}
    stopped = [r for r in result["rows"] if r["case"] == "attention/causal" and r["status"] != "ok"]
    assert stopped and stopped[0]["status"] == status and note in stopped[0]["note"]
    assert all(r["fwd_ms"] is None for r in stopped)
    assert all(r["status"] == "ok" for r in result["rows"] if r["case"] == "aggregation/causal")


def test_memory_is_the_median_of_fresh_processes(monkeypatch):
    calls = iter([5.0, 1.0, 3.0] * 100)
    monkeypatch.setattr(ops, "probe_memory", _fake_probe(lambda name, T: next(calls)))
    cfg = OpsConfig(lengths=[16], mixers=["aggregation"], modes="causal", repeats=1, warmup=1, d_model=16,
                    memory_repeats=3, device="cpu", threads=1)
    rows = ops.run(cfg, progress=False)
    assert all(r["peak_mem_mib"] == 3.0 and r["peak_mem_mib_runs"] == "5.0 1.0 3.0" for r in rows)


@pytest.mark.parametrize("points, T, quadratic, predicted", [
    ([], 1024, True, None), ([(256, 10.0)], 512, True, 40.0), ([(256, 10.0)], 512, False, 20.0),
    ([(256, 10.0), (512, 20.0)], 2048, True, 80.0),  # the measured slope wins over the guess
])
def test_memory_prediction_extrapolates_the_measured_slope(points, T, quadratic, predicted):
    assert predict_memory(points, T, quadratic) == (None if predicted is None else pytest.approx(predicted))


@pytest.mark.parametrize("bad, message", [(dict(dtype="int8"), "dtype"), (dict(modes="sideways"), "mode"),
                                          (dict(repeats=0), "repeats"), (dict(d_model=0), "d_model")])
def test_bad_config_is_a_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        OpsConfig(lengths=[16], **bad).validate()
