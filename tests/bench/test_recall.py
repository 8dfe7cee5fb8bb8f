"""``linmix bench recall``: the plan (cuts, check, exclusions), the loop's pieces, a tiny CLI run writing its
files, and the resume that skips finished runs."""
from __future__ import annotations

import json

import pytest
import torch

from linmix.bench import recall
from linmix.bench.recall import RecallConfig, plan
from linmix.bench.recall_train import fixed_sets, learning_rate, scored, build_model, state_bytes
from linmix.data.synthetic.mqar import window_ceiling

TINY_ARGS = ["--sizes", "16x2", "--d-model", "16", "--vocab-size", "32", "--max-steps", "4", "--eval-every", "2",
             "--warmup-steps", "1", "--val-examples", "8", "--test-examples", "8", "--lrs", "1e-3",
             "--device", "cpu", "--threads", "1", "--no-progress"]


def tiny(**kw) -> RecallConfig:
    base = dict(sizes="16x2", d_models=[16], vocab_size=32, max_steps=4, eval_every=2, warmup_steps=1,
                val_examples=8, test_examples=8, lrs=[1e-3], seeds=1, hybrids=[], device="cpu", threads=1)
    return RecallConfig(**(base | kw))


def test_default_plan_skips_bidirectional_mixers_and_cuts_seeds_then_sizes():
    cfg = RecallConfig()
    assert "fnet" in cfg.excluded() and "fnet" not in cfg.models()
    assert cfg.models()["attention"] == "attention,attention" and cfg.models()["summation,attention"] == \
        "summation,attention"
    full = plan(cfg)
    assert {r["seed"] for r in full} == {0, 1, 2} and len({(r["T"], r["kv"]) for r in full}) == 7
    seeds = RecallConfig(cut="seeds")
    per_size = {}
    for r in plan(seeds):
        per_size.setdefault((r["T"], r["kv"]), set()).add(r["seed"])
    assert per_size[(128, 8)] == {0, 1, 2} and all(len(s) == 1 for k, s in per_size.items() if k != (128, 8))
    assert "seeds cut" in seeds.cut_note()
    sizes = RecallConfig(cut="sizes")
    assert sizes.plan_sizes() == [(64, 4), (128, 8), (256, 16)] and "(256, 64) not run" in sizes.cut_note()
    assert RecallConfig().cut_note() == ""
    assert (full[0]["T"], full[0]["kv"]) == (128, 8)  # headline first: a grid stopped early still has it
    small = RecallConfig(d_model=64, seeds=1)
    assert small.cut_note() == "seeds cut: 1 per point; widths cut: d=128 not run"


def test_check_is_attention_d64_at_the_headline_size_and_bad_settings_fail_early():
    cfg = RecallConfig(check=True)
    assert cfg.models() == {"attention": "attention,attention"} and cfg.plan_sizes() == [(128, 8)]
    assert {(r["d_model"], r["seed"]) for r in plan(cfg)} == {(64, 0)} and len(plan(cfg)) == len(cfg.lrs)
    with pytest.raises(ValueError, match="no causal model"):
        tiny(mixers=["fnet"]).validate()
    with pytest.raises(ValueError, match="4 \\* num_kv"):
        tiny(sizes="16x8").validate()
    with pytest.raises(ValueError, match="64x4"):
        tiny(sizes="16by2")


def test_logits_only_at_the_queries_and_the_schedule():
    cfg = tiny()
    model = build_model("attention,attention", cfg, 16, 16, False, 0)
    x, y = fixed_sets(cfg, 16, 2)["test"]
    logits, target = scored(model, x, y)
    assert logits.shape == (8 * 2, 32) and torch.equal(target, y[y != -100])
    assert model.encoder.layers[0].ffn is None  # no MLP: ffn_mult 0
    cfg = RecallConfig(max_steps=1000, warmup_steps=100, schedule="cosine")
    assert learning_rate(0, 1.0, cfg) == pytest.approx(0.01) and learning_rate(99, 1.0, cfg) == 1.0
    assert learning_rate(550, 1.0, cfg) == pytest.approx(0.5) and learning_rate(999, 1.0, cfg) < 1e-4
    flat = RecallConfig(max_steps=1000, warmup_steps=100)  # the default: constant after the warm-up
    assert flat.schedule == "constant" and learning_rate(0, 1.0, flat) == pytest.approx(0.01)
    assert learning_rate(100, 1.0, flat) == learning_rate(999, 1.0, flat) == 1.0
    assert state_bytes(build_model("attention,attention", cfg, 16, 32, True, 0), 32, torch.device("cpu")) > \
        state_bytes(build_model("attention,attention", cfg, 16, 16, True, 0), 16, torch.device("cpu")) > 0


def test_cli_quick_run_writes_its_files_and_a_rerun_trains_nothing(tmp_path, capsys, monkeypatch):
    from linmix.cli import main

    out = tmp_path / "recall"
    argv = ["bench", "recall", "--quick", "--mixers", "attention,local_attention(window=4),fnet", "--hybrids", "",
            *TINY_ARGS, "--out", str(out)]
    assert main(argv) == 0
    names = {p.name for p in out.iterdir()}
    assert {"recall.csv", "recall.json", "recall.md", "README.md", "recall_runs.jsonl",
            "recall_accuracy_vs_state.png", "recall_accuracy_vs_kv.png"} <= names
    runs = (out / "recall_runs.jsonl").read_text().splitlines()
    assert len(runs) == 2 and {json.loads(r)["model"] for r in runs} == {"attention", "local_attention(window=4)"}
    md = (out / "recall.md").read_text()
    assert "`fnet`: bidirectional only" in md and "ceiling" in md and "n/a" in md  # harness target not run here
    rows = json.loads((out / "recall.json").read_text())["rows"]
    local = next(r for r in rows if r["model"].startswith("local"))
    x, y = fixed_sets(tiny(), 16, 2)["test"]
    assert local["ceiling"] == window_ceiling(x, y, 2, 4) and local["window"] == 4
    assert all(r["state_bytes"] > 0 and r["chance"] == 0.5 for r in rows)

    def must_not_train(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(recall, "train_run", must_not_train)
    assert main(argv) == 0
    assert (out / "recall_runs.jsonl").read_text().splitlines() == runs
    assert json.loads((out / "recall.json").read_text())["rows"][0]["accuracy"] == rows[0]["accuracy"]


def test_resume_reruns_runs_made_under_another_setting(tmp_path, monkeypatch):
    trained = []
    real = recall.train_run
    monkeypatch.setattr(recall, "train_run", lambda spec, *a, **k: trained.append(spec) or real(spec, *a, **k))
    recall.run(tiny(mixers=["summation"], out=str(tmp_path)), progress=False)
    recall.run(tiny(mixers=["summation"], out=str(tmp_path)), progress=False)
    assert len(trained) == 1
    rows = recall.run(tiny(mixers=["summation"], out=str(tmp_path), max_steps=2), progress=False)
    assert len(trained) == 2 and rows[0]["model"] == "summation" and rows[0].get("ceiling") is None
    assert len((tmp_path / recall.RUNS_FILE).read_text().splitlines()) == 2
    wide = recall.run(tiny(mixers=["local_attention(window=64)"], out=str(tmp_path)), progress=False)
    assert wide[0]["ceiling"] == 1.0  # a window >= T sees every pair


def test_a_failed_harness_check_exits_nonzero_and_says_so(tmp_path, capsys):
    from linmix.cli import main

    argv = ["bench", "recall", "--check", *TINY_ARGS, "--max-steps", "2", "--out", str(tmp_path / "check")]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "harness check FAILED: attention reached" in out and "(target 0.99)" in out


def test_report_only_tabulates_the_finished_runs_and_lists_the_rest(tmp_path, monkeypatch):
    from linmix.cli import main

    out = tmp_path / "recall"
    base = ["bench", "recall", *TINY_ARGS, "--seeds", "1", "--hybrids", "", "--out", str(out)]
    assert main(base + ["--mixers", "attention"]) == 0

    def must_not_train(*a, **k):
        raise AssertionError("--report-only trained a run")

    monkeypatch.setattr(recall, "train_run", must_not_train)
    assert main(base + ["--mixers", "attention,summation", "--report-only"]) == 0
    md = (out / "recall.md").read_text()
    assert "Not run yet (1 planned runs" in md and "`summation` (T=16, kv=2, d=16) lr 0.001 seed 0" in md
    rows = json.loads((out / "recall.json").read_text())["rows"]
    assert [(r["model"], r["status"]) for r in rows] == [("attention", "ok"), ("summation", "not run")]


def _row(model: str, acc: float, T: int = 128, kv: int = 8, d: int = 64, status: str = "ok") -> dict:
    return {"model": model, "accuracy": acc, "T": T, "kv": kv, "d_model": d, "status": status}


def test_zoology_anchors_sit_beside_the_cells_of_the_same_size():
    from linmix.bench.recall_report import anchors_table

    rows = [_row("attention", 0.99), _row("summation", 0.14), _row("spectral", 0.2),
            _row("local_attention(window=32)", 0.78), _row("window_linear_attention", 0.995),
            _row("summation,attention", 0.76), _row("spectral(kernel=implicit,gate=true)", 0.8),
            _row("spectral,local_attention(window=32)", 0.28), _row("linear_attention", 0.5, T=256, kv=16, d=64),
            _row("aggregation", 0.9, status="not run")]
    table = anchors_table(rows)
    line = next(x for x in table.splitlines() if x.startswith("| T=128, kv=8, d=64"))
    assert "Hyena 0.20" in line and "BaseConv 0.37" in line
    # attention alone; the best model with no softmax attention (local attention and not-run rows excluded);
    # the best hybrid (a single windowed-attention mixer, stacked, is not a hybrid)
    # a comma inside a mixer's options does not make a hybrid
    assert line.endswith("| 0.990 (`attention`) | 0.800 (`spectral(kernel=implicit,gate=true)`) "
                         "| 0.760 (`summation,attention`) |")
    assert "T=256, kv=16, d=128" not in table  # the d=64 row at (256, 16) is not Zoology's d=128 anchor
    assert anchors_table([_row("attention", 0.9, T=64, kv=4)]) is None


def test_windowed_stacks_get_their_softmax_window_and_others_none():
    from linmix.bench.recall import _window

    assert _window("local_attention(window=32),local_attention(window=16)") == 16
    assert _window("window_linear_attention,window_linear_attention") == 64  # its default window
    assert _window("window_linear_attention(window=8)") == 8
    assert _window("summation,local_attention(window=32)") is None
    assert _window("attention,attention") is None


def test_missing_runs_are_grouped_per_model_and_size_with_each_lr_its_seeds():
    from linmix.bench.recall_report import missing_runs

    def spec(model, lr, seed, T=128):
        return {"model": model, "lr": lr, "seed": seed, "T": T, "kv": 8, "d_model": 64}

    text = missing_runs([spec("attention", 3e-3, 1), spec("attention", 3e-3, 2), spec("attention", 2e-2, 2),
                         spec("summation", 1e-2, 0), spec("attention", 1e-2, 0, T=256)])
    assert text == ("`attention` (T=128, kv=8, d=64) lr 0.003 seeds 1, 2, lr 0.02 seed 2; "
                    "`summation` (T=128, kv=8, d=64) lr 0.01 seed 0; `attention` (T=256, kv=8, d=64) lr 0.01 seed 0")


def test_targets_read_the_finished_row_beside_planned_runs_of_the_same_case():
    from linmix.bench.targets import check_targets

    case = "attention/d64/no-mlp/T128"
    rows = [{"case": case, "model": "attention", "kv": 8, "accuracy": 0.897, "status": "ok"},
            {"case": case, "model": "attention", "kv": 8, "status": "not run"}]
    got = {t["target"]: t for t in check_targets("recall", rows)}
    check = got["attention d=64 without MLP reaches 0.99 MQAR accuracy at T=128, kv=8"]
    assert check["status"] == "missed" and check["measured"] == "0.897"


def test_best_lr_prefers_the_lrs_with_most_seeds_then_the_best_mean():
    from linmix.bench.stats import best_lr

    def runs(*accs, steps=100):
        return [{"accuracy": a, "steps": steps} for a in accs]

    # a single lucky seed at 3e-3 does not outrank the three-seed mean at 1e-2
    by_lr = {3e-3: runs(0.995), 1e-2: runs(0.99, 0.98, 0.97), 2e-2: runs(0.5, 0.4, 0.3)}
    score = {lr: sum(r["accuracy"] for r in rs) / len(rs) for lr, rs in by_lr.items()}
    assert best_lr(by_lr, score) == 1e-2
    # on a complete grid it is the plain best mean, and fewer steps break a tie
    by_lr = {3e-3: runs(0.9, 0.9, steps=300), 1e-2: runs(0.9, 0.9, steps=200), 2e-2: runs(0.1, 0.2)}
    score = {lr: sum(r["accuracy"] for r in rs) / len(rs) for lr, rs in by_lr.items()}
    assert best_lr(by_lr, score) == 1e-2
