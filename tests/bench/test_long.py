"""``linmix bench long`` end to end on tiny data: records, statuses, files; and the weight transfer."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from linmix.bench.long import LongConfig
from linmix.bench.long_tasks import build_lm, extend_lm

TRAIN = "First Citizen:\nBefore we proceed any further, hear me speak.\nAll:\nSpeak, speak.\n" * 12
VALID = "First Citizen:\nYou are all resolved rather to die than to famish?\nAll:\nResolved.\n" * 6

TINY = ["--models", "summation,attention", "--d-model", "16", "--n-heads", "2", "--train-len", "16",
        "--train-steps", "2", "--batch-size", "2", "--eval-lengths", "16,32", "--eval-tokens", "32",
        "--passkey-train-len", "16", "--passkey-steps", "2", "--passkey-lengths", "16,32",
        "--passkey-depths", "0,1", "--passkey-samples", "1", "--device", "cpu", "--threads", "1", "--no-progress"]


@pytest.fixture
def tiny_data(tmp_path):
    folder = tmp_path / "data" / "tinyshakespeare"
    folder.mkdir(parents=True)
    (folder / "train.txt").write_text(TRAIN)
    (folder / "valid.txt").write_text(VALID)
    return tmp_path / "data"


def _rows(out):
    with open(out / "long.csv") as f:
        return list(csv.DictReader(f))


def test_cli_quick_run_writes_every_record_and_file(tmp_path, tiny_data):
    from linmix.cli import main

    out = tmp_path / "out"
    assert main(["bench", "long", "--quick", *TINY, "--data-dir", str(tiny_data), "--out", str(out)]) == 0
    rows = _rows(out)
    lm = [r for r in rows if r["task"] == "lm:tinyshakespeare"]
    pk = [r for r in rows if r["task"] == "passkey"]
    assert {(r["model"], r["T"]) for r in lm} == {(m, T) for m in ("summation", "attention") for T in ("16", "32")}
    assert len(pk) == 2 * 2 * 2 and {r["depth"] for r in pk} == {"0.0", "1.0"}
    assert all(r["status"] == "ok" for r in rows)  # extended past train_len=16: every point runs
    assert all(1.0 < float(r["ppl"]) < 1e4 and int(r["tokens_evaluated"]) == 32 for r in lm)
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 and float(r["seconds_per_seq"]) > 0 for r in pk)
    assert all(r["peak_mem_mib"] != "" for r in lm)  # the fresh-process probe ran
    assert [r["untrained_positions"] for r in lm if r["model"] == "summation"] == ["0", "16"]
    for name in ("summation", "attention"):
        assert (out / f"long_passkey_{name}.png").stat().st_size > 1000
    assert (out / "long_ppl_tinyshakespeare.png").exists() and (out / "long_cost.png").exists()
    text = (out / "long.md").read_text()
    assert "Excluded: fnet" in text and "untrained" in text and "chance 10%" in text
    meta = json.loads((out / "long.json").read_text())["meta"]
    assert meta["benchmark"] == "long" and meta["config"]["train_len"] == 16 and meta["config"]["quick"]


def test_a_model_that_cannot_run_past_max_len_is_reported_not_dropped(tmp_path, tiny_data):
    from linmix.cli import main

    out = tmp_path / "out"
    assert main(["bench", "long", *TINY, "--models", "summation", "--no-extend", "--no-memory", "--positionals",
                 "learned", "--datasets", "tinyshakespeare:char",
                 "--data-dir", str(tiny_data), "--out", str(out)]) == 0
    rows = _rows(out)
    assert {(r["task"], r["T"], r["status"]) for r in rows if r["depth"] in ("", "0.0")} == {
        ("lm:tinyshakespeare", "16", "ok"), ("lm:tinyshakespeare", "32", "cannot run past max_len=16"),
        ("passkey", "16", "ok"), ("passkey", "32", "cannot run past max_len=16")}
    assert all(r["ppl"] == "" for r in rows if r["status"] != "ok" and r["task"].startswith("lm"))
    assert "cannot run past max_len=16" in (out / "long.md").read_text()
    assert (out / "long_passkey_summation.png").exists()


@pytest.mark.parametrize("layers", ["summation*2", "spectral*2", "summation,attention"])
def test_extended_model_keeps_the_trained_weights(layers):
    small = build_lm(layers, 11, 16, 2, "learned", 8, seed=0)
    with torch.no_grad():
        for p in small.parameters():
            p.add_(0.1 * torch.randn_like(p))  # "trained": differs from any fresh initialisation
    big = extend_lm(small, 32)
    assert big.max_len == 32 and small.max_len == 8
    ids = torch.randint(0, 11, (2, 32))
    with torch.no_grad():  # causal: the first 8 positions see only trained rows/taps
        assert torch.allclose(big(ids)[:, :8], small(ids[:, :8]), atol=1e-5)
    assert torch.equal(big.encoder.pos[:8], small.encoder.pos)


def test_config_rejects_bidirectional_mixers_and_bad_values():
    with pytest.raises(ValueError, match="sees the future"):
        LongConfig(models="f=fnet*2").validate()
    with pytest.raises(ValueError, match="tokenizer must be"):
        LongConfig(datasets="tinyshakespeare:sentencepiece").validate()
    with pytest.raises(ValueError, match="depths must lie"):
        LongConfig(passkey_depths="0,2").validate()
    assert "fnet" not in LongConfig().model_specs() and LongConfig().model_specs()["hybrid"] == "summation*3,attention"


def test_a_length_free_model_runs_past_max_len_as_trained_and_a_table_bound_one_does_not():
    from linmix.bench.long_tasks import CannotRun, model_at

    free = build_lm("attention*2", 11, 16, 2, "rotary", 8, seed=0)
    assert model_at(free, 64, extend=False) is free
    assert free(torch.randint(0, 11, (1, 64))).shape == (1, 64, 11)
    bound = build_lm("attention*2", 11, 16, 2, "learned", 8, seed=0)
    with pytest.raises(CannotRun, match="cannot run past max_len=8"):
        model_at(bound, 64, extend=False)


def test_a_rerun_resumes_from_the_finished_units(tmp_path, tiny_data, monkeypatch):
    from linmix.bench import long
    from linmix.cli import main

    out = tmp_path / "out"
    argv = ["bench", "long", *TINY, "--models", "summation", "--no-memory", "--positionals", "rotary",
            "--datasets", "tinyshakespeare:char", "--data-dir", str(tiny_data), "--out", str(out)]
    assert main(argv) == 0
    units = [json.loads(line)["unit"] for line in (out / "long_runs.jsonl").read_text().splitlines()]
    assert units == ["lm:tinyshakespeare/summation/rotary", "passkey/summation/rotary"]
    first = _rows(out)

    def must_not_train(*a, **k):
        raise AssertionError("a finished unit was measured again")

    monkeypatch.setattr(long, "_lm_rows", must_not_train)
    monkeypatch.setattr(long, "_passkey_rows", must_not_train)
    assert main(argv) == 0
    assert [(r["subject"], r["T"], r["ppl"]) for r in _rows(out)] == [(r["subject"], r["T"], r["ppl"]) for r in first]


def test_another_setting_is_measured_again(tmp_path, tiny_data, monkeypatch):
    from linmix.bench import long
    from linmix.cli import main

    out = tmp_path / "out"
    argv = ["bench", "long", *TINY, "--models", "summation", "--no-memory", "--no-passkey", "--positionals",
            "rotary", "--datasets", "tinyshakespeare:char", "--data-dir", str(tiny_data), "--out", str(out)]
    assert main(argv) == 0
    calls = []
    real = long._lm_rows
    monkeypatch.setattr(long, "_lm_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(argv[:argv.index("--train-steps") + 1] + ["3"] + argv[argv.index("--train-steps") + 2:]) == 0
    assert calls == [1]
