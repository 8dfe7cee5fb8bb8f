"""`linmix distill` on a tiny `linmix train lm` run: the four validation losses, the model, resuming, errors."""
from __future__ import annotations

import json

import torch

from linmix.cli import main
from linmix.distill.cli import parse_keep
from linmix.train.sample import load_lm

VAL = ("teacher", "swap", "transfer", "recovery")


def distill(run, data, out, *extra: str) -> int:
    return main(["distill", "--checkpoint", str(run), "--mixer", "linear_attention", "--data-dir", str(data),
                 "--transfer-steps", "4", "--recovery-steps", "3", "--batch-size", "4", "--eval-batches", "2",
                 "--log-every", "2", "--save-every", "2", "--out", str(out), "--quiet", *extra])


def test_distill_writes_the_four_validation_losses_and_a_loadable_model(tiny_run, distill_data, tmp_path, capsys):
    out = tmp_path / "d"
    assert distill(tiny_run, distill_data, out, "--keep", "-1", "--kl-weight", "0.5", "--lora-rank", "2") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["val_loss"]) == set(VAL)
    assert all(isinstance(summary["val_loss"][k], float) and summary["val_loss"][k] > 0 for k in VAL)
    assert summary["replaced"] == ["encoder.layers.0.mixer"] and summary["kept"] == ["encoder.layers.1.mixer"]
    assert list(summary["transfer"]["final"]) == ["encoder.layers.0.mixer"]
    assert summary["layers"] == "linear_attention,attention"
    for name in ("README.md", "distill.json", "transfer/transfer.jsonl", "transfer/transfer_loss.png",
                 "recovery/recovery.jsonl", "recovery/recovery_loss.png"):
        assert (out / name).is_file(), name
    assert "after attention transfer" in (out / "README.md").read_text()
    model, tokenizer = load_lm(out / "model")  # adapters merged, teachers dropped: a plain linmix LM
    assert model.encoder.layer_names == ["linear_attention", "attention"]
    assert model(torch.tensor([tokenizer.encode("to be")])).shape[-1] == model.config.vocab_size
    printed = capsys.readouterr().out
    assert "val loss: teacher" in printed

    assert distill(tiny_run, distill_data, out, "--keep", "-1", "--kl-weight", "0.5", "--lora-rank", "2") == 0
    again = json.loads((out / "summary.json").read_text())  # finished stages resume without a step
    assert again["val_loss"] == summary["val_loss"]


def test_a_different_setting_on_the_same_out_is_refused(tiny_run, distill_data, tmp_path, capsys):
    out = tmp_path / "d"
    assert distill(tiny_run, distill_data, out) == 0
    capsys.readouterr()
    assert distill(tiny_run, distill_data, out, "--loss", "nl2") == 2
    err = capsys.readouterr().err.strip()
    assert "loss='mse'" in err and len(err.splitlines()) == 1


def test_a_bad_mixer_is_one_line_and_exit_2(tiny_run, distill_data, tmp_path, capsys):
    code = main(["distill", "--checkpoint", str(tiny_run), "--mixer", "no_such_mixer", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("linmix distill: error: unknown mixer 'no_such_mixer'")
    assert not (tmp_path / "x").exists()
    code = main(["distill", "--checkpoint", str(tmp_path / "missing"), "--mixer", "summation"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "does not exist" in err


def test_keep_parsing():
    assert parse_keep(None) is None and parse_keep("none") is None
    assert parse_keep("auto") == "auto" and parse_keep("0.25") == 0.25 and parse_keep("0,-1") == [0, -1]
