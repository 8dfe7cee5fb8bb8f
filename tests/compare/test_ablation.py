"""``linmix ablate``: single-factor variants of a classifier under one protocol, resumable, one table by factor.
The runs use a tiny synthetic dataset written to tmp_path; the committed configs are only validated."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from linmix.cli import main
from linmix.compare.ablation import AblationConfig, dry_run, run_ablation_file, validate

ABLATE = Path(__file__).resolve().parents[2] / "results" / "ablate"
TOPICS = [["war", "army", "peace"], ["goal", "match", "team"], ["stock", "market", "bank"], ["chip", "code", "web"]]
FILLER = ["the", "a", "of", "and", "to", "in", "is", "it", "that", "was"]


def _news(rng: random.Random, n: int) -> str:
    rows = []
    for _ in range(n):
        label = rng.randrange(4)
        words = [rng.choice(TOPICS[label]) if rng.random() < 0.4 else rng.choice(FILLER)
                 for _ in range(rng.randint(4, 14))]
        rows.append(json.dumps({"text": " ".join(words), "label": label}) + "\n")
    return "".join(rows)


def _data_root(tmp_path: Path) -> Path:
    """A data root holding a tiny four-topic ``ag_news`` (120 train, 40 test texts)."""
    folder = tmp_path / "data" / "ag_news"
    folder.mkdir(parents=True)
    rng = random.Random(7)
    (folder / "labels.json").write_text(json.dumps(["World", "Sports", "Business", "Sci/Tech"]))
    (folder / "train.jsonl").write_text(_news(rng, 120))
    (folder / "test.jsonl").write_text(_news(rng, 40))
    return folder.parent


CONFIG = """\
lrs = [0.001, 0.003]
seeds = 1
out = "{out}"

[base]
task = "classify"

[base.model]
d_model = 16
n_heads = 2
max_len = 16

[base.data]
dataset = "ag_news"
tokenizer = "word"
vocab_size = 200
batch_size = 8
data_dir = "{data}"

[base.optim]
warmup = 0

[base.run]
steps = 4
eval_every = 2
eval_batches = 5
patience = 0
progress = false

[[variants]]
name = "summation (papers)"
group = "reference"
layers = "summation(normalize=none)"

[[variants]]
name = "attention"
group = "reference"
layers = "attention"

[[variants]]
name = "summation d32"
group = "width"
layers = "summation(normalize=none)"
overrides = {{ "model.d_model" = 32 }}
"""


def _job(tmp_path: Path) -> Path:
    folder = tmp_path / "results" / "abl"
    folder.mkdir(parents=True)
    path = folder / "config.toml"
    path.write_text(CONFIG.format(out=tmp_path / "runs" / "abl", data=_data_root(tmp_path)))
    return path


def test_a_tiny_ablation_runs_reports_and_resumes_without_retraining(tmp_path, monkeypatch, one_thread):
    path = _job(tmp_path)
    result = run_ablation_file(path, command="linmix ablate --config config.toml", progress=False)
    out, dest = tmp_path / "runs" / "abl", path.parent
    for name in ("results.md", "results.csv", "runs.json", "ablation.png"):
        assert (out / name).is_file() and (dest / name).is_file(), name
    assert (dest / "command.txt").read_text().splitlines()[0].endswith("linmix ablate --config config.toml")
    runs = json.loads((dest / "runs.json").read_text())
    assert len(runs) == 6 and sorted({r["lr"] for r in runs}) == [0.001, 0.003]
    assert all(math.isfinite(r["val_acc"]) and 0 <= r["val_acc"] <= 1 for r in runs)
    rows = {r["variant"]: r for r in result["rows"]}
    assert rows["summation d32"]["params"] > rows["summation (papers)"]["params"]  # no parameter matching
    assert rows["summation d32"]["delta"] == pytest.approx(
        rows["summation d32"]["val_acc"] - rows["summation (papers)"]["val_acc"])
    assert all(math.isfinite(r["val_acc"]) and r["s_per_epoch"] > 0 for r in rows.values())
    md = (dest / "results.md").read_text()
    assert "| reference | summation (papers) | `summation(normalize=none)@bare` | - |" in md
    assert "| width | summation d32 |" in md and "model.d_model=32" in md and "| ref |" in md
    assert "val_acc lr 0.001 | val_acc lr 0.003 | best val_acc | Δ vs reference | train s/epoch |" in md
    assert "- machine: " in md and "no parameter matching" in md and "- runs: 6 of 6 finished" in md

    record = out / "summation-d32" / "seed0-lr0.001" / "record.json"
    stamp = record.stat().st_mtime_ns

    def refuse(config):
        raise AssertionError(f"retrained {config.run.out}")

    monkeypatch.setattr("linmix.train.run_training", refuse)
    again = run_ablation_file(path, progress=False)  # every record exists: read, not retrained
    assert record.stat().st_mtime_ns == stamp
    assert [r["val_acc"] for r in again["rows"]] == [r["val_acc"] for r in result["rows"]]
    assert run_ablation_file(path, report_only=True, progress=False)["rows"][0]["params"] > 0
    assert (dest / "command.txt").read_text().splitlines()[0].endswith("linmix ablate --config " + str(path))
    path.write_text(path.read_text().replace("warmup = 0", "warmup = 1"))  # a changed protocol never mixes in
    with pytest.raises(ValueError, match="finished under a different config"):
        run_ablation_file(path, progress=False)


def test_an_interrupted_ablation_trains_only_the_missing_run(tmp_path, monkeypatch, one_thread):
    from linmix.train import run_training

    path = _job(tmp_path)
    run_ablation_file(path, progress=False)
    out = tmp_path / "runs" / "abl"
    (out / "attention" / "seed0-lr0.003" / "record.json").unlink()  # killed before its record was written
    trained = []
    monkeypatch.setattr("linmix.train.run_training", lambda config: trained.append(config) or run_training(config))
    result = run_ablation_file(path, progress=False)
    assert [(c.model.layers, c.optim.lr) for c in trained] == [("attention", 0.003)]
    assert len(result["records"]) == 6 and (out / "attention" / "seed0-lr0.003" / "record.json").is_file()


def _config(**changes) -> AblationConfig:
    data = {"base": {"task": "classify", "data": {"dataset": "ag_news"}, "run": {"steps": 2}}, "lrs": [1e-3],
            "variants": [{"name": "sum", "group": "reference", "layers": "summation"},
                         {"name": "att", "group": "reference", "layers": "attention"}]}
    data.update(changes)
    return AblationConfig.from_dict(data)


@pytest.mark.parametrize("variant, needle", [
    ({"name": "att", "group": "x", "layers": "attention"}, "duplicate variant name 'att'"),
    ({"name": "w", "group": "x", "layers": "summation", "overrides": {"model.widht": 3}},
     "variant 'w': override 'model.widht': unknown config key"),
    ({"name": "w", "group": "x", "layers": "summation", "overrides": {"optim.lr": 3}},
     "variant 'w': override 'optim.lr': the ablation sets it"),
    ({"name": "w", "group": "x", "layers": "summation", "overrides": {"data.dataset": "nope"}},
     "variant 'w': override 'data.dataset': unknown dataset 'nope'"),
    ({"name": "w", "group": "x", "layers": "sumation"}, "variant 'w': layers 'sumation': unknown mixer"),
    ({"name": "w", "group": "x", "layers": "summation(normalise=sqrt)"}, "variant 'w': layers"),
    ({"name": "w", "group": "x", "layers": "summation", "arch": "deep"}, "variant 'w': layers 'summation': arch"),
    ({"name": "w", "group": "x", "layers": "summation", "overrides": {"model.d_model": -4}}, "variant 'w': d_model"),
    ({"name": "w", "group": "x", "layers": "summation", "colour": "red"}, "variant 'w': unknown key 'colour'"),
])
def test_a_bad_variant_is_a_one_line_error_naming_it(variant, needle):
    cfg = _config()
    with pytest.raises(ValueError) as err:
        validate(AblationConfig.from_dict({"base": cfg.base.to_dict(), "lrs": cfg.lrs, "variants": [
            {"name": v.name, "group": v.group, "layers": v.layers} for v in cfg.variants] + [variant]}))
    assert needle in str(err.value) and len(str(err.value).splitlines()) == 1


def test_the_grid_and_task_are_checked():
    with pytest.raises(ValueError, match="lrs must be a non-empty list"):
        validate(_config(lrs=[]))
    with pytest.raises(ValueError, match="base.task must be 'classify'"):
        validate(_config(base={"task": "lm"}))
    with pytest.raises(ValueError, match="unknown key 'lr'"):
        _config(lr=[1e-3])
    plan = validate(_config(variants=[{"name": "s", "group": "pooling", "layers": "summation",
                                       "overrides": {"model": {"pooling": "sum"}}}]))  # TOML's unquoted keys
    assert plan[0].config.model.pooling == "sum" and plan[0].config.model.arch == "bare"


def test_the_cli_reports_a_bad_file_in_one_line_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('lrs = [0.001]\n[base]\ntask = "classify"\n[[variants]]\nname = "a"\ngroup = "g"\n'
                   'layers = "summation"\noverrides = { "model.nope" = 1 }\n')
    assert main(["ablate", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("linmix ablate: error: variant 'a': override 'model.nope'") and len(err.splitlines()) == 1
    assert main(["ablate", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("name, runs", [("20newsgroups-256", 30), ("reuters-256", 26)])
def test_the_committed_ablation_configs_validate_without_data(name, runs, monkeypatch):
    monkeypatch.delenv("LINMIX_DATA", raising=False)
    path = ABLATE / name / "config.toml"
    plan = dry_run(path)
    assert len(plan) == runs and {r.lr for r in plan} == {0.003, 0.01} and {r.seed for r in plan} == {0}
    by_name = {r.variant.name: r for r in plan}
    ref = by_name["summation (papers)"].config
    assert ref.model.arch == "bare" and ref.model.pooling == "mean" and ref.model.d_model == 128
    assert "normalize=none" in ref.model.layers and ref.run.epochs == (4.0 if "20news" in name else 8.0)
    assert {r.variant.group for r in plan} >= {"reference", "normalisation", "positions", "depth", "pooling",
                                               "width", "tokenisation"}
    assert all(r.config.model.arch == "bare" for r in plan)
    command = f"# command: OMP_NUM_THREADS=1 linmix ablate --config results/ablate/{name}/config.toml"
    assert command in path.read_text().splitlines()[:5]
