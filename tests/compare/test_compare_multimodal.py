"""`linmix compare multimodal` on a tiny clothing-reviews-like folder: every candidate (ridge included) in one
table with finite test scores, ridge wired right (near-perfect on a linear target), --drop-feature, the claim
line, and one-line errors for bad candidates and unknown features."""
from __future__ import annotations

import csv
import json
import random

import pytest

from linmix.cli import main
from linmix.compare.candidates import Candidate
from linmix.compare.multimodal import claim_sentence
from linmix.compare.run import plan_sizes, resolve_compare
from linmix.compare.sizing import within_budget
from linmix.config import COMPARE_DEFAULTS, compare_config

FEATURES = ["Age", "Positive Feedback Count", "Recommended IND"]
#: enough distinct words that the embedding dominates the parameter count, as on the real data
WORDS = [f"w{i}" for i in range(800)]


def _rows(n: int, rng: random.Random) -> list[dict]:
    """Reviews whose target is an exact linear function of the numeric inputs (plus a little noise)."""
    rows = []
    for i in range(n):
        age, feedback, recommended = rng.randint(18, 80), rng.randint(0, 30), rng.randint(0, 1)
        target = 1.0 + 0.02 * age + 0.05 * feedback + 1.5 * recommended + rng.gauss(0, 0.01)
        rows.append({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))),
                     "Title": None if i % 3 else "Nice", "Age": age, "Positive Feedback Count": feedback,
                     "Recommended IND": recommended, "Rating": target, "Clothing ID": i % 7, "id": i})
    return rows


@pytest.fixture(scope="module")
def reviews_root(tmp_path_factory):
    """A data root holding ``womens_clothing_reviews/`` laid out like the real folder."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "womens_clothing_reviews"
    folder.mkdir()
    (folder / "schema.json").write_text(json.dumps({
        "name": "womens_clothing_reviews", "task": "regression", "text_field": "text", "target_field": "Rating",
        "numeric_input_fields": FEATURES, "extra_text_fields": ["Title"]}))
    rng = random.Random(7)
    for split, n in (("train", 240), ("test", 60)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(n, rng)))
    return root


def _compare(root, out, *extra: str) -> int:
    return main(["compare", "multimodal", "--data-dir", str(root), "--out", str(out), "--steps", "2",
                 "--seeds", "1", "--d-model", "32", "--max-len", "16", "--batch-size", "16", "--vocab-size", "500",
                 "--warmup", "0", "--no-match-params", "--quiet", *extra])


def _table(out) -> dict[str, dict[str, str]]:
    return {r["candidate"]: r for r in csv.DictReader(open(out / "results.csv"))}


def test_every_candidate_gets_a_row_with_finite_test_scores(reviews_root, tmp_path, capsys):
    out = tmp_path / "all"
    assert _compare(reviews_root, out) == 0
    rows = _table(out)
    assert list(rows) == COMPARE_DEFAULTS["multimodal"]["candidates"]
    for name, row in rows.items():
        for metric in ("test_mae", "test_rmse", "test_r2"):
            assert float(row[metric]) == pytest.approx(float(row[metric])), (name, metric)  # finite, not NaN
        assert float(row["train_s"]) > 0 and float(row["speedup"]) > 0
    assert float(rows["attention+concat"]["speedup"]) == pytest.approx(1.0)
    ridge = rows["ridge"]
    assert int(ridge["params"]) == 3 and float(ridge["test_r2"]) > 0.99  # a linear target: ridge nails it
    md = (out / "results.md").read_text()
    assert "| attention+concat (baseline) |" in md and "| ridge | 3 | - |" in md
    assert "summation+add beats attention+concat (papers: MAE 0.0289 vs 0.0314, R^2 0.358 vs 0.260)" in md
    assert "It holds in this run." in md or "It does not hold in this run" in md
    assert "numeric inputs: Age, Positive Feedback Count, Recommended IND" in md
    runs = json.loads((out / "runs.json").read_text())
    net = next(r for r in runs if r["candidate"] == "summation+add")
    assert net["val_rmse"] > 0 and net["test_examples"] == 60  # validated on the carve, tested on test
    assert "results.md" in capsys.readouterr().out


def test_drop_feature_removes_the_input_everywhere(reviews_root, tmp_path):
    out = tmp_path / "drop"
    code = _compare(reviews_root, out, "--layers", "ridge", "--layers", "summation+add", "--layers",
                    "attention+concat", "--drop-feature", "Recommended IND")
    assert code == 0
    rows = _table(out)
    assert int(rows["ridge"]["params"]) == 2
    assert float(rows["ridge"]["test_r2"]) < 0.9  # the dropped input carried much of the target
    summary = json.loads((out / "summation-add" / "seed0" / "summary.json").read_text())
    assert summary["numeric_stats"]["numeric_fields"] == ["Age", "Positive Feedback Count"]
    assert "left out: Recommended IND" in (out / "results.md").read_text()


@pytest.mark.parametrize("extra, needle", [
    (["--drop-feature", "Recommended"], "numeric inputs of clothing_reviews are 'Age', 'Positive Feedback Count', "
                                        "'Recommended IND'"),
    (["--layers", "summation+sum"], "the part after '+' must be one of add, concat, text"),
    (["--layers", "sumation+add"], "unknown mixer"),
    (["--layers", "ridge", "--baseline", "ridge"], "the baseline must be a network"),
])
def test_bad_input_is_one_line_with_exit_code_2(reviews_root, tmp_path, capsys, extra, needle):
    assert _compare(reviews_root, tmp_path / "bad", *extra) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad" / "results.md").exists()


def test_candidate_syntax():
    assert Candidate.parse("summation+add") == Candidate("summation", "block", "add")
    assert Candidate.parse("attention+concat@bare").name == "attention+concat@bare"
    assert Candidate.parse(" ridge ").is_ridge and Candidate.parse("summation*2").fusion is None
    assert Candidate.parse("summation+text").name == "summation+text"
    cfg = resolve_compare(compare_config("multimodal"))
    assert cfg.baseline == "attention+concat" and cfg.seeds == 3 and cfg.base.data.valid_fraction == 0.1
    assert resolve_compare(compare_config("lm")).seeds == 1
    with pytest.raises(ValueError, match="are for linmix compare multimodal"):
        resolve_compare(compare_config("classify", candidates=["summation+add"]))


def test_plan_sizes_matches_the_networks_and_skips_ridge():
    cfg = resolve_compare(compare_config("multimodal", d_model=64))
    sizes = plan_sizes(cfg, vocab_size=5000, n_numeric=3)
    assert "ridge" not in sizes and sizes["attention+concat"][0] == 64
    assert set(sizes) == set(COMPARE_DEFAULTS["multimodal"]["candidates"]) - {"ridge"}
    assert all(within_budget(p, sizes["attention+concat"][1]) for _, p in sizes.values())


def test_claim_sentence_is_computed_from_the_rows():
    def row(name, mae, r2, train_s, std=0.0):
        return {"candidate": name, "test_mae": mae, "test_r2": r2, "train_s": train_s, "tokens_per_s": 100 / train_s,
                "test_mae_std": std, "test_r2_std": std}

    holds = claim_sentence([row("summation+add", 0.5, 0.4, 10), row("attention+concat", 0.6, 0.3, 40)])
    assert "It holds in this run." in holds and "4.00x the training speed" in holds
    slow = claim_sentence([row("summation+add", 0.5, 0.4, 30), row("attention+concat", 0.6, 0.3, 40)])
    assert "It does not hold in this run: less than 2x faster." in slow
    close = claim_sentence([row("summation+add", 0.59, 0.4, 10, std=0.05), row("attention+concat", 0.6, 0.3, 40)])
    assert "The MAE gap is smaller than the spread over runs (std)." in close
    assert "Not checked" in claim_sentence([row("summation+add", 0.5, 0.4, 10)])


def test_text_fusion_has_no_numeric_branch_and_ignores_the_numbers():
    import torch

    import linmix

    model = linmix.MultimodalRegressor(50, n_numeric=3, d_model=16, layers="summation", fusion="text", max_len=8)
    assert model.numeric is None and not any(n.startswith("numeric") for n, _ in model.named_parameters())
    ids = torch.randint(0, 50, (4, 8))
    model.eval()
    assert torch.equal(model(ids, torch.zeros(4, 3)), model(ids, torch.randn(4, 3)))
    with pytest.raises(ValueError, match="numeric must have shape"):
        model(ids, torch.zeros(4, 2))


def test_the_networks_r2_is_the_ridge_rows_r2():
    """The training loop's R^2 (summed over batches) and the ridge row's (one array) are the same formula."""
    import numpy as np
    import torch

    from linmix.compare.multimodal import scores
    from linmix.train.tasks import RegressionTask

    rng = np.random.default_rng(0)
    target, pred = rng.normal(3, 1, 50), rng.normal(3, 1, 50)
    task = RegressionTask.__new__(RegressionTask)
    task.mean, task.std = 2.5, 1.5
    model = lambda ids, numeric, padding_mask=None: torch.as_tensor((pred - 2.5) / 1.5)[ids[:, 0]]  # noqa: E731
    sums: dict[str, float] = {}
    for chunk in np.array_split(np.arange(50), 3):
        batch = (torch.as_tensor(chunk)[:, None], None, None, torch.as_tensor(target[chunk]))
        for k, v in task.eval_sums(model, batch).items():
            sums[k] = sums.get(k, 0.0) + v
    expected = scores(pred, target, "val")
    got = task.finalize(sums)
    for key in ("val_mae", "val_rmse", "val_r2"):
        assert got[key] == pytest.approx(expected[key], rel=1e-9)
