"""The fresh-process memory probe measures a known allocation and reports failures instead of raising."""
from __future__ import annotations

from linmix.bench.memprobe import probe_memory

JOB = "linmix.bench.memprobe:allocation_job"


def test_probe_measures_a_known_allocation():
    small = probe_memory(JOB, {"mib": 1}, "cpu")
    big = probe_memory(JOB, {"mib": 64}, "cpu")
    assert small["ok"] and big["ok"], (small, big)
    assert 56 <= big["peak_extra_mib"] <= 96 and small["peak_extra_mib"] < 16
    assert big["method"]


def test_probe_failure_is_a_result_not_an_exception():
    bad = probe_memory(JOB, {"mib": -1}, "cpu")
    assert bad["ok"] is False and "Error" in bad["error"]
    missing = probe_memory("linmix.bench.memprobe:no_such_job", {}, "cpu")
    assert missing["ok"] is False and "no_such_job" in missing["error"]
