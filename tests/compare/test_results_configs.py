"""Every table under results/compare/ is one config file plus one command: each ``config.toml`` holds exactly
the settings of the command its folder's ``command.txt`` recorded, and spells them out instead of leaning on
defaults that may change. Nothing here needs the datasets: configs are only parsed and resolved."""
from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest

from linmix.cli import build_parser
from linmix.compare.cli import config_from_args
from linmix.compare.candidates import Candidate
from linmix.compare.run import _train_config, resolve_compare
from linmix.config import COMPARE_DEFAULTS, MODEL_DEFAULTS, TASK_DEFAULTS, CompareConfig
from linmix.config_io import read_config_file
from linmix.defaults import BARE_MIXER_OPTIONS, LEGACY_BARE_MIXER_OPTIONS
from linmix.data.bpe import DEFAULT_BPE_VOCAB
from linmix.data.tokenizers import DEFAULT_WORD_VOCAB

RESULTS = Path(__file__).resolve().parents[2] / "results" / "compare"
CONFIGS = sorted(RESULTS.glob("*/config.toml"))
#: the prefix of every recorded command (the old table script ran the module with one thread per job)
OLD_PREFIX = ["OMP_NUM_THREADS=1", "python", "-m", "linmix"]
#: old flags without a meaning for the result, dropped (output folder, progress bars)
DROPPED = {"--out": 1, "--quiet": 0}
#: ``linmix compare lm``'s defaults when the old commands were recorded (the preset's block 128, batch 32 and
#: lr 3e-3; 600 steps evaluated every 100): an old command is resolved under them
OLD_LM_COMPARE_DEFAULTS = {"candidates": ["attention*4", "summation*4", "summation*3,attention"],
                           "overrides": {"run.steps": 600, "run.eval_every": 100, "run.patience": 0}}
#: what a tokenizer gets when data.vocab_size is unset (the old commands left it unset for BPE LMs)
TOKENIZER_VOCAB = {"word": DEFAULT_WORD_VOCAB, "bpe": DEFAULT_BPE_VOCAB}


def _task(path: Path) -> str:
    return read_config_file(path)["base"]["task"]


def _resolve(argv: list[str]) -> CompareConfig:
    """The real command-line path: ``linmix compare ...`` parsed, turned into a config and resolved."""
    return resolve_compare(config_from_args(build_parser().parse_args(argv)))


def _from_file(path: Path) -> CompareConfig:
    return _resolve(["compare", _task(path), "--config", str(path)])


def _recorded_flags(path: Path) -> list[str] | None:
    """The flags of the recorded ``linmix compare`` command, ``--out``/``--quiet`` dropped; ``None`` when the
    folder was remade by ``linmix experiment run`` (its command then names this config file)."""
    words = shlex.split((path.parent / "command.txt").read_text().splitlines()[0])
    if "experiment" in words:
        assert any(Path(w).resolve() == path.resolve() for w in words if w.endswith(".toml")), words
        return None
    assert words[:len(OLD_PREFIX)] == OLD_PREFIX, words
    flags, i = [], len(OLD_PREFIX)
    while i < len(words):
        skip = DROPPED.get(words[i])
        if skip is None:
            flags.append(words[i])
        i += 1 + (skip or 0)
    # every old flag still exists under the same name: the training fields are generated from the config
    # (--max-len, --beta2, --eval-every, ...) and --layers / --lr / --seeds / --time-budget are compare's own
    return flags


def _comparable(cfg: CompareConfig) -> dict:
    """``to_dict()`` without what does not change the result; an unset vocabulary is the tokenizer's default."""
    values = cfg.to_dict()
    values.pop("out")
    values["base"]["run"].pop("progress")
    data = values["base"]["data"]
    if data["vocab_size"] is None:
        data["vocab_size"] = TOKENIZER_VOCAB.get(data["tokenizer"])
    return values


def test_every_job_folder_has_a_config():
    jobs = sorted(p.parent.name for p in RESULTS.glob("*/results.md"))
    assert jobs and jobs == sorted(p.parent.name for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.parent.name for p in CONFIGS])
def test_config_reproduces_the_recorded_command(path, monkeypatch):
    assert _from_file(path).out == f"runs/tables/{path.parent.name}" and _from_file(path).base.run.progress is False
    flags = _recorded_flags(path)
    if flags is None:
        pytest.skip("command.txt records a `linmix experiment run` of this config")
    # both under the defaults the command was recorded with (the file itself leans on none: see below)
    monkeypatch.setitem(COMPARE_DEFAULTS, "lm", OLD_LM_COMPARE_DEFAULTS)
    recorded = _resolve(flags)
    if _bare_summation(recorded):  # recorded when a bare summation layer divided by the count, as the file pins
        recorded.base.model.mixer_options = copy.deepcopy(LEGACY_BARE_MIXER_OPTIONS)
    assert _comparable(_from_file(path)) == _comparable(recorded)


def _bare_summation(cfg: CompareConfig) -> list[str]:
    """The candidates of ``cfg`` that are bare stacks with a summation layer."""
    return [c for c in cfg.candidates if c.endswith("@bare") and "summation" in c]


BARE_CONFIGS = [p for p in CONFIGS if _bare_summation(_from_file(p))]


def test_some_tables_have_bare_summation_rows():
    assert len(BARE_CONFIGS) >= 8, [p.parent.name for p in BARE_CONFIGS]


@pytest.mark.parametrize("path", BARE_CONFIGS, ids=[p.parent.name for p in BARE_CONFIGS])
def test_bare_summation_rows_do_not_depend_on_the_bare_default(path, monkeypatch, tmp_path):
    """A summation@bare row trains what its table measured whatever bare stacks default to: the file pins it."""
    def normalizations():
        cfg = _from_file(path)
        out = {}
        for name in _bare_summation(cfg):
            model = _train_config(cfg, Candidate.parse(name), 64, 0, None, tmp_path).model
            out[name] = model.mixer_options["summation"]["normalize"]
        return out

    measured = normalizations()
    assert set(measured.values()) == {"count"}, measured
    monkeypatch.setitem(BARE_MIXER_OPTIONS, "summation", {"normalize": "sqrt"})
    assert normalizations() == measured


@pytest.mark.parametrize("path", CONFIGS, ids=[p.parent.name for p in CONFIGS])
def test_config_does_not_depend_on_changeable_defaults(path, monkeypatch):
    """Change every task and compare default; the config must resolve to the same result-relevant values.

    The exceptions are values no run uses: the base's layer spec (each candidate sets its own), the base LR
    when an LR grid gives every run its LR, and the step count of a time budget (each probe sets it).
    """
    expected = _comparable(_from_file(path))
    for task, sections in copy.deepcopy(TASK_DEFAULTS).items():
        for section, values in sections.items():
            monkeypatch.setitem(TASK_DEFAULTS[task], section, {k: _other(v) for k, v in values.items()})
    for task, values in copy.deepcopy(COMPARE_DEFAULTS).items():
        overrides = {k: _other(v) for k, v in values["overrides"].items()}
        monkeypatch.setitem(COMPARE_DEFAULTS, task, {"candidates": ["summation"], "overrides": overrides})
    for task, values in copy.deepcopy(MODEL_DEFAULTS).items():
        monkeypatch.setitem(MODEL_DEFAULTS, task, {k: _other(v) for k, v in values.items()})
    changed = _comparable(_from_file(path))
    unused = [("model", "layers")]
    if expected["lrs"]:
        unused.append(("optim", "lr"))
    if expected["time_budget_s"] is not None:
        unused.append(("run", "steps"))
    for section, key in unused:
        expected["base"][section].pop(key), changed["base"][section].pop(key)
    assert changed == expected


def _other(value):
    """A different valid value of the same kind (a default someone might pick tomorrow)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return type(value)(value * 3 + 1)
    if value in ("char", "word", "bpe"):
        return {"char": "word", "word": "bpe", "bpe": "char"}[value]
    if isinstance(value, str) and value in ("tinyshakespeare", "ag_news", "clothing_reviews"):
        return "wikitext2"
    return "attention" if isinstance(value, str) else value


def test_the_default_job_is_what_compare_lm_runs_with_no_flags():
    """results/compare/lm-default is the README's main job: its file must stay equal to the defaults."""
    path = RESULTS / "lm-default" / "config.toml"
    assert _comparable(_from_file(path)) == _comparable(_resolve(["compare", "lm"]))
