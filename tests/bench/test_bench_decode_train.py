"""``linmix bench decode`` and ``linmix bench train`` output schema on tiny sizes."""
from __future__ import annotations

import pytest

from linmix.bench.decode import DecodeConfig, run_decode, write_decode_outputs
from linmix.bench.train_speed import TrainConfig, run_train, write_train_outputs


def test_decode_rows_summary_and_files(tmp_path):
    cfg = DecodeConfig(positions=[8, 16], d_model=16, n_heads=2, vocab_size=11, new_tokens=3, repeats=1,
                       memory=True, device="cpu", threads=1)
    result = run_decode(cfg, progress=False, command="linmix bench decode --test")
    rows = result["rows"]
    assert {(r["model"], r["position"]) for r in rows} == {(m, p) for m in ("summation", "hybrid", "attention")
                                                            for p in (8, 16)}
    for r in rows:
        assert r["per_token_ms"] > 0 and r["samples"] == 3 and r["state_mib"] > 0
        assert r["generate_peak_mib"] is not None
    att = {r["position"]: r["state_mib"] for r in rows if r["model"] == "attention"}
    summ = {r["position"]: r["state_mib"] for r in rows if r["model"] == "summation"}
    assert summ[8] == summ[16]  # O(D) state, whatever the position
    assert att[16] > att[8]  # the KV cache grows with the position
    assert {t["status"] for t in result["summary"]["targets"]} <= {"met", "missed", "n/a"}
    names = {f.name for f in write_decode_outputs(result, tmp_path)}
    assert {"decode.csv", "decode.json", "decode.md", "decode_latency.png", "README.md"} <= names
    assert "linmix bench decode --test" in (tmp_path / "README.md").read_text()


def test_train_rows_and_files(tmp_path):
    cfg = TrainConfig(lengths=[16, 32], models="attention,summation", d_model=16, n_heads=2, vocab_size=11,
                      tokens_per_step=64, steps=1, warmup=1, memory=False, device="cpu", threads=1)
    result = run_train(cfg, progress=False)
    rows = result["rows"]
    assert {(r["model"], r["T"]) for r in rows} == {(m, T) for m in ("attention", "summation") for T in (16, 32)}
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["batch_size"] == 64 // r["T"] and r["params"] > 0
    assert all(r["speedup_vs_attention"] == pytest.approx(1.0) for r in rows if r["model"] == "attention")
    names = {f.name for f in write_train_outputs(result, tmp_path)}
    assert {"train.csv", "train.json", "train.md", "train_tokens_per_s.png", "README.md"} <= names


def test_bad_decode_config_is_a_value_error():
    with pytest.raises(ValueError, match="new tokens"):
        run_decode(DecodeConfig(positions=[8], new_tokens=1), progress=False)
