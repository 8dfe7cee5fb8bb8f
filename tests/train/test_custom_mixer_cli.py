"""A mixer defined outside the package, registered at run time, trains from the CLI with inline options."""
from __future__ import annotations

import json

import pytest
from mixers.toy_mixer import NAME, ScaledPrefixMean

import linmix
from linmix.cli import main
from linmix.mixers import MIXERS, registered

TINY = ["--d-model", "16", "--n-heads", "2", "--block-size", "16", "--batch-size", "4", "--warmup", "1",
        "--eval-every", "3", "--eval-batches", "1", "--final-eval-batches", "1", "--quiet"]


@pytest.mark.parametrize("layers, alphas", [
    (f"{NAME}(alpha=2)*2", [2.0, 2.0]),
    (f"summation,{NAME}(alpha=0.5)", [0.5]),
])
def test_a_registered_toy_mixer_trains_from_the_cli_with_inline_options(tiny_root, tmp_path, capsys, layers,
                                                                        alphas):
    out = tmp_path / "run"
    with registered(ScaledPrefixMean, NAME):
        code = main(["train", "lm", "--layers", layers, "--steps", "3", "--data-dir", str(tiny_root),
                     "--out", str(out), *TINY])
        assert code == 0, capsys.readouterr().err
        config = json.loads((out / "config.json").read_text())
        assert config["layers"] == layers and config["model_type"] == "linmix_lm"
        assert json.loads((out / "train_config.json").read_text())["model"]["layers"] == layers
        model = linmix.load_pretrained(out)
        mixers = [layer.mixer for layer in model.encoder.layers if isinstance(layer.mixer, ScaledPrefixMean)]
        assert [m.alpha for m in mixers] == alphas
    assert NAME not in MIXERS
    # without the registration the saved model names an unknown mixer: a clear error, not a crash
    with pytest.raises(ValueError, match=f"unknown mixer '{NAME}'"):
        linmix.load_pretrained(out)


def test_an_unknown_option_of_the_toy_is_one_line_exit_2(tiny_root, tmp_path, capsys):
    with registered(ScaledPrefixMean, NAME):
        code = main(["train", "lm", "--layers", f"{NAME}(beta=2)", "--steps", "3", "--data-dir", str(tiny_root),
                     "--out", str(tmp_path / "run"), *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"mixer '{NAME}' does not take option(s) ['beta']; it accepts: alpha" in err
    assert not (tmp_path / "run").exists()
