"""``linmix bench ops`` output schema on a tiny range (timings are not asserted: they are the benchmark's job)."""
from __future__ import annotations

import csv
import json

import pytest

from linmix.bench.ops import OpsConfig, run_ops
from linmix.bench.report import write_ops_outputs

LENGTHS = [16, 32]


@pytest.fixture(scope="module")
def result():
    cfg = OpsConfig(lengths=LENGTHS, mixers=["summation", "fnet"], repeats=1, warmup=1, d_model=16, budget_s=1.0,
                    memory_repeats=2,
                    device="cpu", threads=1)
    return run_ops(cfg, progress=False, command="linmix bench ops --test")


def test_rows_cover_every_case_and_length(result):
    labels = {(r["case"], r["T"]) for r in result["rows"]}
    for case in ("floor:clone", "floor:linear", "attention/causal", "attention/bidir", "summation/causal",
                 "summation/bidir", "fnet/bidir"):
        for T in LENGTHS:
            assert (case, T) in labels
    assert ("fnet/causal", 16) not in labels


def test_rows_carry_times_memory_ratios_and_floors(result):
    for r in result["rows"]:
        assert r["status"] == "ok", r
        assert r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0 and r["repeats"] >= 1
        assert r["fwd_bwd_tokens_per_s"] == pytest.approx(r["T"] / (r["fwd_bwd_ms"] / 1e3))
        assert r["peak_mem_mib"] is not None and r["peak_mem_mib"] >= 0
        assert r["speedup_fwd_bwd"] > 0
        if r["kind"] != "floor":
            assert r["floor_multiple_fwd_bwd"] > 0
    attn = [r for r in result["rows"] if r["case"] == "attention/causal"]
    assert all(r["speedup_fwd_bwd"] == pytest.approx(1.0) for r in attn)
    s = next(r for r in result["rows"] if r["case"] == "summation/causal")
    assert s["n_proj"] == 2
    lin = next(r for r in result["rows"] if r["case"] == "floor:linear" and r["T"] == s["T"])
    assert s["floor_fwd_bwd_ms"] == pytest.approx(2 * lin["fwd_bwd_ms"])
    fnet = next(r for r in result["rows"] if r["case"] == "fnet/bidir")
    clone = next(r for r in result["rows"] if r["case"] == "floor:clone" and r["T"] == fnet["T"])
    assert fnet["floor_fwd_bwd_ms"] == pytest.approx(clone["fwd_bwd_ms"])  # no projection: the clone floor


def test_meta_and_summary(result):
    meta = result["meta"]
    for key in ("platform", "cpu", "cpu_count", "torch", "torch_threads", "git_commit", "device"):
        assert key in meta["machine"]
    assert meta["config"]["lengths"] == LENGTHS and meta["command"] == "linmix bench ops --test"
    summary = result["summary"]
    assert set(summary["cases"]) >= {"summation/causal", "attention/bidir"}
    assert "slope_fwd_bwd" in summary["cases"]["summation/causal"]
    assert "crossover_fwd_bwd" in summary["cases"]["summation/causal"]
    assert all(t["status"] in ("met", "missed", "n/a") for t in summary["targets"])


def test_outputs_are_written(result, tmp_path):
    files = write_ops_outputs(result, tmp_path)
    names = {f.name for f in files}
    assert {"ops.csv", "ops.json", "ops.md", "ops_time.png", "ops_memory.png", "README.md"} <= names
    with open(tmp_path / "ops.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result["rows"])
    assert {"case", "T", "fwd_ms", "fwd_bwd_ms", "peak_mem_mib", "speedup_fwd_bwd", "floor_multiple_fwd_bwd",
            "fwd_bwd_tokens_per_s"} <= set(rows[0])
    data = json.loads((tmp_path / "ops.json").read_text())
    assert data["meta"]["machine"]["torch"]
    readme = (tmp_path / "README.md").read_text()
    assert "linmix bench ops --test" in readme and "Log-log slopes" in readme and "Targets" in readme
    assert (tmp_path / "ops_time.png").stat().st_size > 1000


def _fake_probe(mib_at):
    def probe(target, kwargs, device="cpu", timeout_s=0):
        return {"ok": True, "peak_extra_mib": mib_at(kwargs["case"]["name"], kwargs["T"]), "method": "fake"}
    return probe


def test_memory_limit_stops_a_case_and_says_so(monkeypatch):
    import linmix.bench.ops as ops

    # attention measured over the limit at the first length: it is not timed there, nor run again
    monkeypatch.setattr(ops, "probe_memory", _fake_probe(lambda name, T: 100.0 if name == "attention" else 1.0))
    cfg = OpsConfig(lengths=[16, 32], mixers=["aggregation"], modes="causal", repeats=1, warmup=1, d_model=16,
                    memory_limit_mb=50, device="cpu", threads=1)
    rows = run_ops(cfg, progress=False)["rows"]
    first = next(r for r in rows if r["case"] == "attention/causal" and r["T"] == 16)
    later = next(r for r in rows if r["case"] == "attention/causal" and r["T"] == 32)
    assert first["status"] == "over_limit" and "memory limit" in first["note"] and first["fwd_ms"] is None
    assert later["status"] == "skipped" and "memory limit" in later["note"] and later["fwd_ms"] is None
    assert all(r["status"] == "ok" for r in rows if r["case"] == "aggregation/causal")


def test_predicted_memory_stops_a_quadratic_case_before_it_runs(monkeypatch):
    import linmix.bench.ops as ops

    monkeypatch.setattr(ops, "probe_memory", _fake_probe(lambda name, T: 10.0))
    cfg = OpsConfig(lengths=[16, 32], mixers=["aggregation"], modes="causal", repeats=1, warmup=1, d_model=16,
                    memory_limit_mb=30, device="cpu", threads=1)
    rows = run_ops(cfg, progress=False)["rows"]
    att = next(r for r in rows if r["case"] == "attention/causal" and r["T"] == 32)
    agg = next(r for r in rows if r["case"] == "aggregation/causal" and r["T"] == 32)
    assert att["status"] == "skipped" and "predicted peak 40 MiB" in att["note"]  # 10 MiB x (32/16)^2
    assert agg["status"] == "ok"  # a linear case predicts 20 MiB: runs


def test_bad_config_is_a_value_error():
    with pytest.raises(ValueError):
        run_ops(OpsConfig(lengths=[16], dtype="int8"), progress=False)
    with pytest.raises(ValueError, match="mode"):
        run_ops(OpsConfig(lengths=[16], modes="sideways"), progress=False)
