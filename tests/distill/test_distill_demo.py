"""`linmix distill-demo` on a tiny corpus: the table, the from-scratch step count, resuming, bad configs."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import linmix.distill.pipeline as pipeline
from linmix.cli import main
from linmix.config import CompareConfig
from linmix.config_io import read_config_file
from linmix.distill.demo_config import DemoCandidate, DemoConfig, load_demo_config, write_demo_config
from linmix.distill.demo_report import COLUMNS

REPO = Path(__file__).resolve().parents[2]
HEADER = "| candidate | params | plain swap | after transfer | after recovery | from scratch (steps) | teacher |"
TEACHER_STEPS, TRANSFER, RECOVERY = 4, 2, 3


def tiny_config(data: Path, **changes) -> dict:
    """A demo of a two-layer attention LM at toy sizes (the fixture corpus of conftest.py)."""
    config = {
        "candidates": ["summation", "linear_attention keep=-1"], "transfer_steps": TRANSFER,
        "recovery_steps": RECOVERY, "transfer_lr": 1e-3, "recovery_lr": 1e-3,
        "teacher": {"task": "lm", "model": {"layers": "attention*2", "d_model": 16, "n_heads": 2, "max_len": 16},
                    "data": {"dataset": "tinyshakespeare", "tokenizer": "char", "batch_size": 4,
                             "data_dir": str(data)},
                    "optim": {"lr": 1e-3, "warmup": 1},
                    "run": {"steps": TEACHER_STEPS, "eval_every": 4, "eval_batches": 2, "final_eval_batches": 2,
                            "patience": 0}},
    }
    config.update(changes)
    return config


def write(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_demo_config(DemoConfig.from_dict(config), folder / "config.toml")


def demo(config: Path, out: Path) -> int:
    return main(["distill-demo", "--config", str(config), "--out", str(out), "--quiet"])


def stamps(out: Path) -> dict[str, int]:
    """Modification times of what each stage writes once: the models and the stages' logs."""
    files = [out / "teacher" / "model.safetensors", out / "teacher" / "metrics.jsonl"]
    for slug in ("summation", "linear_attention-keep_-1"):
        files += [out / slug / "distill" / "summary.json", out / slug / "distill" / "transfer" / "transfer.jsonl",
                  out / slug / "scratch" / "model.safetensors", out / slug / "scratch" / "metrics.jsonl"]
    return {str(f): f.stat().st_mtime_ns for f in files}


def stamps_if_present(out: Path) -> dict[str, int]:
    """Modification times of every file under ``out`` but the stage timer's."""
    return {str(f): f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file() and "stage_times" not in f.name}


def test_demo_end_to_end_resumes_and_skips(distill_data, tmp_path, capsys, monkeypatch):
    config, out = write(tmp_path / "cfg", tiny_config(distill_data)), tmp_path / "out"
    real = pipeline.distill_run

    def interrupted(checkpoint, mixer, out, **kw):
        if kw.get("keep") is not None:
            raise KeyboardInterrupt
        return real(checkpoint, mixer, out, **kw)

    monkeypatch.setattr(pipeline, "distill_run", interrupted)
    assert demo(config, out) == 130  # stopped in the second candidate's distillation
    monkeypatch.setattr(pipeline, "distill_run", real)
    done_before = stamps_if_present(out)
    assert (out / "summation" / "scratch" / "summary.json").is_file()
    capsys.readouterr()
    assert demo(config, out) == 0
    printed = capsys.readouterr().out
    assert "[1/5] teacher attention*2: finished earlier" in printed
    assert "[2/5] distill summation: finished earlier" in printed
    assert "[3/5] from scratch summation*2: finished earlier" in printed
    assert "[4/5] distill linear_attention keep=-1: converting" in printed
    assert all(stamps_if_present(out)[f] == t for f, t in done_before.items())  # nothing finished was redone

    lines = (out / "results.md").read_text().splitlines()
    table = lines[lines.index(HEADER) + 2:]
    rows = [line for line in table if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows] == ["| `summation*2`", "| `linear_attention,attention` (keep=-1)"]
    assert all(len(r.strip("|").split("|")) == 7 for r in rows)
    total = TEACHER_STEPS + TRANSFER + RECOVERY
    assert f"= {TEACHER_STEPS} + {TRANSFER} + {RECOVERY} = {total} steps" in "\n".join(lines)
    with open(out / "results.csv") as f:
        records = list(csv.DictReader(f))
    assert list(records[0]) == list(COLUMNS) and len(records) == 2
    results = json.loads((out / "results.json").read_text())
    teacher = json.loads((out / "teacher" / "summary.json").read_text())
    for row in results["rows"]:
        assert row["scratch_steps"] == row["distilled_steps"] == total and row["scratch_status"] == "completed"
        assert row["params"] == row["params_scratch"]  # the same architecture
        assert row["teacher"] == pytest.approx(teacher["final"]["val_loss"], abs=1e-6)  # the same batches
        assert all(row[k] > 0 for k in ("swap", "transfer", "recovery", "scratch"))
    for slug in ("summation", "linear_attention-keep_-1"):
        scratch = json.loads((out / slug / "scratch" / "summary.json").read_text())
        assert scratch["steps_done"] == scratch["total_steps"] == total
    assert results["steps"] == {"teacher": 4, "transfer": 2, "recovery": 3, "scratch": 9}
    for name in ("results.md", "results.csv", "results.json", "results.png", "command.txt"):
        assert (config.parent / name).is_file(), name  # copied beside the config
    assert load_demo_config(out / "config.toml").to_dict() == load_demo_config(config).to_dict()

    before = stamps(out)
    assert demo(config, out) == 0  # everything finished: read, not retrained
    assert capsys.readouterr().out.count("finished earlier") == 5
    assert stamps(out) == before
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]

    write(tmp_path / "cfg", tiny_config(distill_data, recovery_lr=3e-3))
    assert demo(config, out) == 2  # another setting on the same out is refused, in one line
    err = capsys.readouterr().err.strip()
    assert "recovery_lr=0.001" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("change, message", [
    ({"transfer_step": 3}, "unknown key 'transfer_step'"),
    ({"candidates": ["no_such_mixer"]}, "unknown mixer 'no_such_mixer'"),
    ({"candidates": ["summation keep=5"]}, "keep index 5 is out of range for 2 attention layers"),
    ({"candidates": ["summation keep=0,1"]}, "keeps every attention layer"),
    ({"candidates": ["summation window=3"]}, "unknown part 'window=3'"),
    ({"candidates": []}, "candidates must be a non-empty list"),
    ({"loss": "l1"}, "loss must be one of mse, nl2"),
])
def test_a_bad_config_is_one_line_and_exit_2(distill_data, tmp_path, capsys, change, message):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(distill_data, **change)))
    assert demo(config, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("linmix distill-demo: error:") and message in err, err
    assert not (tmp_path / "out").exists()
    assert demo(tmp_path / "missing.toml", tmp_path / "out") == 2
    assert "does not exist" in capsys.readouterr().err


def test_candidates_parse_and_the_config_round_trips(tmp_path):
    assert DemoCandidate.parse("summation") == DemoCandidate("summation", "summation", None)
    cand = DemoCandidate.parse("linear_attention  keep=0,-1")
    assert (cand.text, cand.keep, cand.keep_text, cand.slug) == ("linear_attention keep=0,-1", [0, -1], "0,-1",
                                                                 "linear_attention-keep_0,-1")
    config = load_demo_config(REPO / "results" / "convert" / "nanogpt-64" / "config.toml")
    path = write_demo_config(config, tmp_path / "again.toml")
    assert load_demo_config(path).to_dict() == config.to_dict()


def test_the_committed_teacher_is_the_nanogpt_64_attention_run():
    """results/convert/nanogpt-64 trains exactly the attention*4 run of results/compare/nanogpt-64."""
    demo_cfg = load_demo_config(REPO / "results" / "convert" / "nanogpt-64" / "config.toml")
    teacher, candidates = demo_cfg.validate()
    compare = CompareConfig.from_dict(read_config_file(REPO / "results" / "compare" / "nanogpt-64" / "config.toml"))
    expected = compare.base.with_overrides({"model.layers": compare.baseline, "optim.lr": compare.lrs[0],
                                            "run.progress": True}).resolved()
    assert teacher.to_dict() == expected.to_dict()
    assert [c.text for c in candidates] == ["summation", "spectral", "linear_attention", "summation keep=-1",
                                            "linear_attention keep=-1"]
    assert (demo_cfg.transfer_steps, demo_cfg.recovery_steps) == (300, 300)
