"""Every bench runs the same way: config -> records -> summary with targets -> the same file set."""
from __future__ import annotations

import csv
import json

import pytest

from linmix.bench.runner import BENCHES, bench_module, write_bench

#: per bench: the columns every record has (old results files have them too) and the files written
SCHEMA = {
    "ops": ({"case", "mixer", "mode", "kind", "T", "status", "fwd_ms", "fwd_bwd_ms", "peak_mem_mib",
             "speedup_fwd_bwd", "floor_multiple_fwd_bwd", "fwd_bwd_tokens_per_s", "n_proj"},
            {"ops.csv", "ops.json", "ops.md", "ops_time.png", "README.md"}),
    "decode": ({"model", "layers", "position", "per_token_ms", "tokens_per_s", "state_mib", "generate_peak_mib",
                "samples"}, {"decode.csv", "decode.json", "decode.md", "decode_latency.png", "decode_state.png",
                             "README.md"}),
    "train": ({"model", "layers", "T", "batch_size", "params", "step_ms", "tokens_per_s", "speedup_vs_attention",
               "peak_mem_mib"}, {"train.csv", "train.json", "train.md", "train_tokens_per_s.png", "README.md"}),
    "long": ({"task", "subject", "model", "layers", "positional", "T", "depth", "status", "ppl", "accuracy",
              "tokens_evaluated", "seconds_per_seq", "params", "train_len"},
             {"long.csv", "long.json", "long.md", "long_passkey_summation.png", "long_cost.png", "README.md"}),
    "recall": ({"case", "model", "layers", "d_model", "mlp", "T", "kv", "best_lr", "accuracy", "accuracy_std",
                "seeds", "steps_to_target", "chance", "at_chance", "state_bytes"},
               {"recall.csv", "recall.json", "recall.md", "recall_accuracy_vs_state.png", "recall_accuracy_vs_kv.png",
                "README.md"}),
}


@pytest.mark.parametrize("name", list(BENCHES))
def test_records_have_the_published_columns(tiny_result, name):
    rows = tiny_result(name)["rows"]
    assert rows and all(SCHEMA[name][0] <= set(r) for r in rows)


@pytest.mark.parametrize("name", list(BENCHES))
def test_result_carries_command_machine_config_and_checked_targets(tiny_result, name):
    result = tiny_result(name)
    meta = result["meta"]
    assert meta["benchmark"] == name and meta["command"] == f"linmix bench {name} --tiny"
    assert {"platform", "cpu", "torch", "torch_threads", "git_commit", "device"} <= set(meta["machine"])
    assert meta["config"]["device"] == "cpu" and meta["machine"]["torch_threads"] == 1
    targets = result["summary"]["targets"]
    assert len(targets) >= 2 and {t["status"] for t in targets} <= {"met", "missed", "n/a"}


@pytest.mark.parametrize("name", list(BENCHES))
def test_outputs_are_the_published_file_set(tiny_result, tmp_path, name):
    result = tiny_result(name)
    files = write_bench(result, tmp_path)
    assert SCHEMA[name][1] <= {f.name for f in files} and all(f.stat().st_size > 0 for f in files)
    with open(tmp_path / f"{name}.csv") as f:
        assert len(list(csv.DictReader(f))) == len(result["rows"])
    assert json.loads((tmp_path / f"{name}.json").read_text())["rows"] == json.loads(json.dumps(result["rows"]))
    readme = (tmp_path / "README.md").read_text()
    assert f"linmix bench {name} --tiny" in readme and "Targets" in readme


@pytest.mark.parametrize("name", list(BENCHES))
def test_each_bench_module_offers_the_interface(name):
    bench = bench_module(name)
    for attr in ("Config", "TITLE", "run", "summarize", "markdown", "plot"):
        assert hasattr(bench, attr), attr
    assert bench.Config.quick_preset().quick is True


def test_unknown_bench_is_a_value_error():
    with pytest.raises(ValueError, match="known: ops, decode, train"):
        bench_module("opz")
