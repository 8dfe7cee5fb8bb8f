"""``linmix bench`` on the command line: tiny ``--quick`` runs write their files and record the command
exactly as it was run; bad input is one line on stderr and exit code 2."""
from __future__ import annotations

import shlex
import sys

import pytest

from linmix.cli import main

TINY = ["--quick", "--d-model", "16", "--device", "cpu", "--threads", "1", "--no-memory", "--no-progress"]
RUNS = {
    "ops": ["--mixers", "local_attention(window=8),aggregation", "--modes", "causal", "--lengths", "16,32", "--repeats", "1"],
    "decode": ["--models", "summation", "--positions", "8", "--new-tokens", "2", "--repeats", "1"],
    "train": ["--models", "attention,summation", "--lengths", "16", "--tokens-per-step", "32", "--steps", "1"],
}
FILES = {"ops": {"ops.csv", "ops.json", "ops.md", "ops_time.png"},
         "decode": {"decode.csv", "decode.json", "decode.md", "decode_latency.png", "decode_state.png"},
         "train": {"train.csv", "train.json", "train.md", "train_tokens_per_s.png"}}


@pytest.mark.parametrize("name", list(RUNS))
def test_quick_run_writes_files_and_the_command_as_run(tmp_path, capsys, monkeypatch, name):
    out = tmp_path / name
    argv = ["bench", name, *RUNS[name], *TINY, "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["/usr/bin/linmix", *argv])
    assert main(argv) == 0
    assert FILES[name] | {"README.md"} <= {p.name for p in out.iterdir()}
    readme = (out / "README.md").read_text()
    assert f"\n{shlex.join(['linmix', *argv])}\n" in readme  # the words as typed, quoted for a shell
    printed = capsys.readouterr().out
    assert "wrote" in printed and "[" in printed  # one status line per target
    if name == "ops":  # a mixer written with inline options is measured under that name
        assert "local_attention(window=8)/causal" in (out / "ops.csv").read_text()


def test_quick_preset_sits_under_the_options(monkeypatch):
    from linmix.bench.cli import config_from_args
    from linmix.bench.ops import OpsConfig

    args = type("Args", (), {"quick": True, "repeats": None, "lengths": "16:64", "mixers": "a(x=1,y=2),b",
                             "no_memory": True, "device": "cpu"})()
    cfg = config_from_args(OpsConfig, args)
    assert (cfg.quick, cfg.repeats, cfg.lengths, cfg.mixers) == (True, 3, [16, 32, 64], ["a(x=1,y=2)", "b"])
    assert cfg.memory is False and cfg.device == "cpu"


@pytest.mark.parametrize("argv, message", [
    (["bench", "ops", "--mixers", "nope"], "unknown mixer 'nope'"),
    (["bench", "ops", "--lengths", "x:y"], "--lengths"),
    (["bench", "decode", "--positions", "0"], "--positions"),
    (["bench", "train", "--models", "nope"], "unknown model"),
])
def test_bench_errors_are_one_line_exit_2(tmp_path, capsys, argv, message):
    assert main([*argv, "--no-progress", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
