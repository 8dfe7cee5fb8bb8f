"""The config tree: task defaults, dict/file round trips, clear errors for unknown keys, CLI precedence."""
from __future__ import annotations

import dataclasses
import json

import pytest

from linmix.cli import build_parser, main
from linmix.config import (MODEL_DEFAULTS, SECTIONS, TASK_DEFAULTS, TASKS, CompareConfig, ModelConfig,
                           TrainConfig, compare_config, train_config)
from linmix.config_io import read_config_file, to_toml, write_config_file
from linmix.train.cli import config_from_args

SUFFIXES = ["toml", "json"]


def rich_config(task: str) -> TrainConfig:
    """A config with every kind of value: nested options, floats, bools, None, strings needing escapes."""
    cfg = train_config(task, layers="summation*2,local_attention(window=8)", d_model=48, lr=2e-3, seed=3,
                       steps=40, data_dir='C:\\data "quoted" ünï', progress=False)
    cfg.model.mixer_options = {"local_attention": {"window": 16, "n_heads": 2}, "summation": {"normalize": "none"}}
    cfg.optim.controller_options = {"every": 20, "scale": 0.5, "on": True}
    return cfg


@pytest.mark.parametrize("task", TASKS)
def test_resolved_defaults_come_from_task_defaults(task):
    cfg = TrainConfig(task=task).resolved()
    for section, defaults in TASK_DEFAULTS[task].items():
        for key, value in defaults.items():
            assert getattr(getattr(cfg, section), key) == value, f"{section}.{key}"
    assert cfg.model.head == task
    assert cfg.model.causal is (task == "lm")
    assert cfg.run.checkpoint_every == cfg.run.eval_every
    assert cfg.optim.schedule == "cosine"  # constant only under an LR controller (see test below)
    derived = {("model", "head"), ("model", "causal"), ("run", "checkpoint_every"), ("optim", "schedule")}
    # every other field keeps its dataclass default
    for section, kind in SECTIONS.items():
        for f in dataclasses.fields(kind):
            if f.name not in TASK_DEFAULTS[task].get(section, {}) and f.default is not dataclasses.MISSING \
                    and (section, f.name) not in derived:
                assert getattr(getattr(cfg, section), f.name) == f.default, f"{section}.{f.name}"


def test_an_lr_controller_defaults_to_warmup_plus_constant():
    assert train_config("lm", lr_controller="qlearning").resolved().optim.schedule == "constant"
    assert train_config("lm", lr_controller="qlearning", schedule="cosine").resolved().optim.schedule == "cosine"
    assert train_config("lm", schedule="constant").resolved().optim.schedule == "constant"


@pytest.mark.parametrize("task", TASKS)
def test_explicit_values_beat_task_defaults(task):
    cfg = train_config(task, d_model=40, batch_size=4, lr=5e-4, steps=7).resolved()
    assert (cfg.model.d_model, cfg.data.batch_size, cfg.optim.lr, cfg.run.steps) == (40, 4, 5e-4, 7)
    assert cfg.run.epochs is None  # explicit steps suppress an epochs default
    assert cfg.resolved() == cfg  # resolving is idempotent


@pytest.mark.parametrize("head", list(MODEL_DEFAULTS))
def test_model_config_defaults_per_head(head):
    cfg = ModelConfig(head=head, vocab_size=10).resolved()
    for key, value in MODEL_DEFAULTS[head].items():
        assert getattr(cfg, key) == value


@pytest.mark.parametrize("overrides, needle", [
    ({"optim.lr": -1.0}, "lr must be a positive number"),
    ({"run.steps": 0}, "steps must be a positive integer"),
    ({"run.steps": 5, "run.epochs": 1.0}, "either steps or epochs"),
    ({"model.dropout": 1.0}, "dropout must lie in [0, 1)"),
    ({"model.layers": "summation,wat"}, "unknown mixer 'wat'"),
    ({"model.mixer_options": {"summation": {"windw": 2}}}, "mixer 'summation' does not take option(s) ['windw']"),
    ({"data.tokenizer": "sentencepiece"}, "tokenizer must be one of"),
    ({"run.amp": "bf16", "run.dtype": "float64"}, "amp needs dtype float32"),
    ({"task": "regress"}, "task must be one of"),
])
def test_resolve_names_the_bad_value(overrides, needle):
    with pytest.raises(ValueError) as info:
        TrainConfig().with_overrides(overrides).resolved()
    assert needle in str(info.value)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("resolve", [False, True])
def test_dict_round_trip(task, resolve):
    cfg = rich_config(task)
    cfg = cfg.resolved() if resolve else cfg
    data = cfg.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain JSON types
    assert TrainConfig.from_dict(data) == cfg
    assert TrainConfig.from_dict({"task": task}) == TrainConfig(task=task)  # missing sections are defaults


@pytest.mark.parametrize("data, needles", [
    ({"modle": {}}, ["unknown key 'modle'", "exp.toml", "sections are"]),
    ({"optim": {"lrr": 1}}, ["unknown key 'lrr'", "exp.toml [optim]", "known keys", "lr"]),
    ({"model": {"layers": "summation", "n_layer": 2}}, ["unknown key 'n_layer'", "exp.toml [model]"]),
    ({"run": 3}, ["exp.toml [run] must be a table"]),
    ([1, 2], ["exp.toml must be a table of sections"]),
])
def test_unknown_keys_name_the_key_and_the_source(data, needles):
    with pytest.raises(ValueError) as info:
        TrainConfig.from_dict(data, "exp.toml")
    for needle in needles:
        assert needle in str(info.value)


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("resolve", [False, True])
def test_train_config_file_round_trip(tmp_path, suffix, task, resolve):
    cfg = rich_config(task)
    cfg = cfg.resolved() if resolve else cfg
    path = write_config_file(cfg.to_dict(), tmp_path / f"exp.{suffix}")
    assert not list(tmp_path.glob("*.tmp"))
    assert TrainConfig.from_dict(read_config_file(path), str(path)) == cfg


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_compare_config_round_trip(tmp_path, suffix):
    cmp = compare_config("classify", candidates=["summation", "attention*2", "summation(normalize='sqrt')@bare"],
                         baseline="attention*2", seeds=3, lrs=[1e-3, 3e-3], time_budget_s=12.5, match_params=False,
                         steps=100, lr=2e-3, layers="summation")
    assert cmp.task == "classify" and cmp.base.optim.lr == 2e-3 and cmp.base.run.steps == 100 and cmp.seeds == 3
    assert CompareConfig.from_dict(cmp.to_dict()) == cmp
    path = write_config_file(cmp.to_dict(), tmp_path / f"cmp.{suffix}")
    assert CompareConfig.from_dict(read_config_file(path), str(path)) == cmp
    assert CompareConfig.from_dict({}) == CompareConfig()


@pytest.mark.parametrize("data, needles", [
    ({"candidate": ["summation"]}, ["unknown key 'candidate'", "cmp.toml", "candidates"]),
    ({"base": {"optim": {"lrr": 1}}}, ["unknown key 'lrr'", "cmp.toml [base] [optim]"]),
])
def test_compare_config_unknown_keys(data, needles):
    with pytest.raises(ValueError) as info:
        CompareConfig.from_dict(data, "cmp.toml")
    for needle in needles:
        assert needle in str(info.value)


def test_with_overrides_sets_dotted_keys_and_rejects_unknown_ones():
    base = TrainConfig(task="lm")
    cfg = base.with_overrides({"optim.lr": 3e-3, "model.layers": "attention*2", "run.steps": 9, "task": "classify",
                               "model.mixer_options": {"attention": {"n_heads": 2}}})
    assert (cfg.optim.lr, cfg.model.layers, cfg.run.steps, cfg.task) == (3e-3, "attention*2", 9, "classify")
    assert cfg.model.mixer_options == {"attention": {"n_heads": 2}}
    assert base == TrainConfig(task="lm")  # a copy: the original is unchanged
    for key, needle in [("optim.lrr", "[optim] has:"), ("optimizer.lr", "SECTION.FIELD"), ("lr", "SECTION.FIELD"),
                        ("optim.", "SECTION.FIELD")]:
        with pytest.raises(ValueError) as info:
            base.with_overrides({key: 1})
        assert repr(key) in str(info.value) and needle in str(info.value)


def test_train_config_maps_bare_and_dotted_names():
    cfg = train_config("classify", layers="attention", lr=1e-3, steps=5, vocab_size=500, **{"model.d_model": 24})
    assert (cfg.model.layers, cfg.optim.lr, cfg.run.steps, cfg.model.d_model) == ("attention", 1e-3, 5, 24)
    assert cfg.data.vocab_size == 500 and cfg.model.vocab_size is None  # the shared name is the tokenizer's
    with pytest.raises(ValueError, match="unknown training option 'lrate'"):
        train_config("lm", lrate=1)


def test_toml_writer_output_is_valid_toml_for_awkward_keys_and_values(tmp_path):
    data = {"a b": 1, "x": [1.5, "s\"q"], "t": {"weird.key": {"n": None, "inf": float("inf"), "on": False}},
            "empty": {}}
    text = to_toml(data)
    path = tmp_path / "w.toml"
    path.write_text(text)
    assert read_config_file(path) == {"a b": 1, "x": [1.5, 's"q'], "t": {"weird.key": {"inf": float("inf"),
                                                                                       "on": False}}, "empty": {}}


@pytest.mark.parametrize("text, suffix, needle", [
    ("task = ", "toml", "is not valid TOML"),
    ("{", "json", "is not valid JSON"),
    ("[1]", "json", "must hold a JSON object"),
    ("task: lm", "yaml", "must end in .toml or .json"),
])
def test_bad_config_files_are_clear_errors(tmp_path, text, suffix, needle):
    path = tmp_path / f"c.{suffix}"
    path.write_text(text)
    with pytest.raises(ValueError, match=needle):
        read_config_file(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_config_file(tmp_path / "missing.toml")


# ------------------------------------------------------------------------------------------- command line
def write_file(tmp_path, suffix: str, task: str = "lm") -> str:
    data = {"task": task, "model": {"d_model": 48, "layers": "summation,local_attention(window=8)"},
            "optim": {"lr": 1e-2, "warmup": 7}, "run": {"steps": 30}}
    return str(write_config_file(data, tmp_path / f"exp.{suffix}"))


def parse(argv: list[str]) -> TrainConfig:
    return config_from_args(build_parser().parse_args(argv)).resolved()


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("flag", ["--optim.lr", "--lr"])
def test_flags_override_the_file_which_overrides_the_defaults(tmp_path, suffix, flag):
    path = write_file(tmp_path, suffix)
    cfg = parse(["train", "lm", "--config", path, flag, "3e-3", "--run.steps", "12"])
    assert cfg.optim.lr == 3e-3 and cfg.run.steps == 12  # flags
    assert cfg.optim.warmup == 7 and cfg.model.d_model == 48  # the file
    assert cfg.model.layers == "summation,local_attention(window=8)"
    assert cfg.data.batch_size == TASK_DEFAULTS["lm"]["data"]["batch_size"]  # the task default
    assert cfg.optim.beta2 == 0.95  # the dataclass default
    file_only = parse(["train", "lm", "--config", path])
    assert file_only.optim.lr == 1e-2 and file_only.run.steps == 30
    defaults = parse(["train", "lm"])
    assert defaults == TrainConfig(task="lm").resolved()


def test_flags_without_a_file_and_the_block_size_alias():
    cfg = parse(["train", "classify", "--layers", "attention(n_heads=2)*2", "--block-size", "64", "--d-model", "24",
                 "--batch-size", "3", "--quiet"])
    assert (cfg.model.layers, cfg.model.max_len, cfg.model.d_model, cfg.data.batch_size) == \
        ("attention(n_heads=2)*2", 64, 24, 3)
    assert cfg.run.progress is False


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_config_file_for_another_task_is_a_clear_error(tmp_path, suffix, capsys):
    path = write_file(tmp_path, suffix, task="classify")
    with pytest.raises(ValueError) as info:
        parse(["train", "lm", "--config", path])
    assert path in str(info.value) and "'classify' config" in str(info.value)
    assert "linmix train classify" in str(info.value)
    assert main(["train", "lm", "--config", path, "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "linmix train classify" in lines[0]
    assert not (tmp_path / "out").exists()


def test_an_unknown_key_in_a_config_file_exits_2_naming_it(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('task = "lm"\n[optim]\nlrr = 0.1\n')
    assert main(["train", "lm", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'lrr'" in err and str(path) in err
