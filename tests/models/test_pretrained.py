"""save_pretrained / from_pretrained: round trips, and clear errors for damaged config.json or weights."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import linmix
from linmix.cli import main
from linmix.config import ModelConfig
from linmix.data.tokenizers import CharTokenizer

V = 40
MODEL_FIELDS = [f.name for f in dataclasses.fields(ModelConfig)]

MAKERS = {
    "lm": lambda: linmix.LanguageModel(V, d_model=16, layers="summation*2,local_attention(window=4)", max_len=32,
                                       n_heads=2),
    "lm-untied-dropout": lambda: linmix.LanguageModel(V, d_model=16, layers="spectral,attention", max_len=32,
                                                      n_heads=2, tie_weights=False, dropout=0.1, norm="post"),
    "classifier": lambda: linmix.Classifier(V, 4, d_model=16, layers="summation", max_len=32, pooling="cls",
                                            arch="bare"),
    "classifier-options": lambda: linmix.Classifier(V, 3, d_model=16, layers="attention,fnet", max_len=32,
                                                    mixer_options={"attention": {"n_heads": 1}}),
    "multimodal": lambda: linmix.MultimodalRegressor(V, 2, d_model=16, layers="spectral", fusion="concat",
                                                     max_len=32),
}


#: classes saved under another model_type than their name (transformers reads it: see linmix.hf)
SAVED_AS = {linmix.LanguageModel: ("linmix_lm", ["LinmixForCausalLM"])}


def inputs(model) -> tuple:
    ids = torch.randint(0, V, (2, 12))
    return (ids, torch.randn(2, 2)) if isinstance(model, linmix.MultimodalRegressor) else (ids,)


@pytest.fixture
def saved(tmp_path, request) -> tuple:
    torch.manual_seed(0)
    model = MAKERS[request.param]().eval()
    return model, model.save_pretrained(tmp_path / "m")


@pytest.mark.parametrize("saved", list(MAKERS), indirect=True)
def test_save_and_load_round_trip(saved):
    model, path = saved
    assert {p.name for p in path.iterdir()} == {"model.safetensors", "config.json"}
    config = json.loads((path / "config.json").read_text())
    model_type, architectures = SAVED_AS.get(type(model), (type(model).__name__, None))
    assert config["model_type"] == model_type
    assert config["linmix_version"] == linmix.__version__
    assert config.get("architectures") == architectures
    header = {"model_type", "linmix_version"} | ({"architectures"} if architectures else set())
    assert set(config) == {*header, *MODEL_FIELDS}
    assert {k: config[k] for k in MODEL_FIELDS} == dataclasses.asdict(model.config)
    loaded = type(model).from_pretrained(path).eval()
    assert loaded.config == model.config
    assert type(linmix.load_pretrained(path)) is type(model)
    args = inputs(model)
    torch.testing.assert_close(loaded(*args), model(*args))
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    rebuilt = linmix.build_model(model.config)  # same architecture from the config alone
    assert type(rebuilt) is type(model)
    assert {n: p.shape for n, p in rebuilt.state_dict().items()} == {n: p.shape for n, p in model.state_dict().items()}


def test_from_config_equals_the_constructor():
    torch.manual_seed(0)
    model = MAKERS["classifier-options"]()
    torch.manual_seed(0)
    again = type(model).from_config(model.config)
    assert again.config == model.config
    for p1, p2 in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p1, p2)


@pytest.mark.parametrize("saved", ["lm"], indirect=True)
def test_a_folder_saved_under_the_class_name_still_loads(saved):
    model, path = saved
    edit_config(path, lambda c: (c.update(model_type="LanguageModel"), c.pop("architectures")))
    loaded = linmix.load_pretrained(path)
    assert type(loaded) is linmix.LanguageModel and loaded.config == model.config


def edit_config(path: Path, change) -> Path:
    config = json.loads((path / "config.json").read_text())
    change(config)
    (path / "config.json").write_text(json.dumps(config))
    return path / "config.json"


@pytest.mark.parametrize("saved", ["lm"], indirect=True)
@pytest.mark.parametrize("key", MODEL_FIELDS)
def test_a_missing_config_key_is_a_value_error_naming_key_and_file(saved, key):
    model, path = saved
    file = edit_config(path, lambda c: c.pop(key))
    with pytest.raises(ValueError) as info:
        type(model).from_pretrained(path)
    assert f"missing key {key!r}" in str(info.value) and str(file) in str(info.value)


@pytest.mark.parametrize("saved", ["lm", "classifier", "multimodal"], indirect=True)
@pytest.mark.parametrize("key", ["n_layers", "mixer"])
def test_an_unknown_config_key_is_a_value_error_naming_key_and_file(saved, key):
    model, path = saved
    file = edit_config(path, lambda c: c.update({key: 3}))
    with pytest.raises(ValueError) as info:
        linmix.load_pretrained(path)
    assert f"unknown key {key!r}" in str(info.value) and str(file) in str(info.value)


@pytest.mark.parametrize("saved", ["lm"], indirect=True)
@pytest.mark.parametrize("change, needle", [
    (lambda c: c.pop("model_type"), "has no model_type"),
    (lambda c: c.update(model_type="Transformer"), "unknown model_type 'Transformer'"),
    (lambda c: c.update(layers="summation,wat"), "unknown mixer 'wat'"),
    (lambda c: c.update(d_model=24), "does not match its config.json"),
])
def test_other_config_damage_is_a_clear_value_error(saved, change, needle):
    model, path = saved
    edit_config(path, change)
    with pytest.raises(ValueError, match=needle):
        linmix.load_pretrained(path)


def damage(file: Path, how: str) -> None:
    data = file.read_bytes()
    cut = {"empty": 0, "header": 5, "half": len(data) // 2, "last_byte": len(data) - 1}
    if how == "garbage":
        file.write_bytes(b"\xff" * 64 + data[64:])
    else:
        file.write_bytes(data[: cut[how]])


DAMAGE = ["empty", "header", "half", "last_byte", "garbage"]


@pytest.mark.parametrize("saved", list(MAKERS), indirect=True)
@pytest.mark.parametrize("how", DAMAGE)
def test_truncated_or_corrupt_weights_are_one_value_error_naming_the_file(saved, how):
    model, path = saved
    damage(path / "model.safetensors", how)
    with pytest.raises(ValueError) as info:
        type(model).from_pretrained(path)
    message = str(info.value)
    assert str(path / "model.safetensors") in message and "truncated or corrupt" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("how", DAMAGE)
def test_sampling_a_truncated_checkpoint_exits_2_with_one_line(tmp_path, capsys, how):
    tokenizer = CharTokenizer.train("hello world\n")
    model = linmix.LanguageModel(tokenizer.vocab_size, d_model=16, layers="summation", max_len=32)
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save(tmp_path / "ckpt")
    assert main(["sample", "--checkpoint", str(tmp_path / "ckpt"), "--max-new-tokens", "3"]) == 0
    capsys.readouterr()
    damage(tmp_path / "ckpt" / "model.safetensors", how)
    code = main(["sample", "--checkpoint", str(tmp_path / "ckpt"), "--max-new-tokens", "3"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("linmix sample: error: ")
    assert str(tmp_path / "ckpt" / "model.safetensors") in lines[0]


def test_loading_something_that_is_not_a_model_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        linmix.LanguageModel.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="missing config.json, model.safetensors"):
        linmix.LanguageModel.from_pretrained(tmp_path / "empty")
    clf = linmix.Classifier(V, 2, d_model=16, max_len=8)
    clf.save_pretrained(tmp_path / "clf")
    with pytest.raises(ValueError, match="holds a Classifier"):
        linmix.LanguageModel.from_pretrained(tmp_path / "clf")
    (tmp_path / "clf" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        linmix.Classifier.from_pretrained(tmp_path / "clf")
