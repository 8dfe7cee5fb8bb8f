"""``linmix compare multimodal``: the summation papers' fusion claim on text + numeric regression.

The papers report that a summation text branch added to the numeric branch (``summation+add``) beats an
attention branch concatenated with it (``attention+concat``) on clothing reviews, at a fraction of the
cost. To check that honestly every network trains as ``linmix train multimodal`` does, with early stopping
on a seeded slice of the training split (``data.valid_fraction``); the weights of its best validation
evaluation (which also picks its LR from the grid) are then scored once on the held-out test split, so the
test split never chooses anything. Two references bracket the networks: ``ridge``, a linear model on the
numeric inputs alone (how much is there without the text at all), and a ``+text`` candidate, the text
branch alone (how much the numeric inputs add).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from linmix.config import CompareConfig, TrainConfig

#: the claim's two candidates: (challenger, reference)
CLAIM = ("summation+add", "attention+concat")
#: what the papers report for them: (MAE, R^2), on the papers' own scaling of the target
PAPER = {"summation+add": (0.0289, 0.358), "attention+concat": (0.0314, 0.260)}
#: the papers' speed range, challenger over reference
PAPER_SPEEDUP = (2.0, 15.0)
#: the ridge penalties cross-validated (efficient leave-one-out, as RidgeCV does by default)
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 4, 15))
#: test metrics the table reports for this task (target units)
TEST_METRICS = ["test_mae", "test_rmse", "test_r2"]


def scores(pred: np.ndarray, target: np.ndarray, prefix: str) -> dict[str, float]:
    """MAE, RMSE and R^2 (1 - squared error over the split's own variance) in target units, as the networks'
    :class:`~linmix.train.tasks.RegressionTask` computes them."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    err = pred - target
    total = float(((target - target.mean()) ** 2).sum())
    return {f"{prefix}_mae": float(np.abs(err).mean()), f"{prefix}_rmse": float(np.sqrt((err ** 2).mean())),
            f"{prefix}_r2": 1.0 - float((err ** 2).sum()) / total if total > 0 else float("nan"),
            f"{prefix}_examples": float(len(target))}


def load_split(config: TrainConfig, split: str) -> Any:
    """One split exactly as the networks of this run see it: same target, dropped inputs and seeded slice."""
    from linmix.data import load_regression

    data = config.data
    return load_regression(data.dataset, split, data.data_dir, target=data.target, seed=config.run.seed,
                           drop_fields=data.drop_features, valid_fraction=data.valid_fraction)


def train_and_test(config: TrainConfig) -> dict[str, Any]:
    """Train one network, then score the weights of its best validation evaluation on the test split.

    Returns the training summary with ``test`` (``test_mae``, ``test_rmse``, ``test_r2``...) added; the run
    folder's ``summary.json`` gets it too. A run that never improved on validation is tested as it ended.
    """
    from linmix.data import MultimodalBatches
    from linmix.train import build_trainer
    from linmix.train.reporting import write_summary
    from linmix.train.run import standardize

    trainer = build_trainer(config)
    trainer.keep_best = True
    summary = trainer.fit()
    if trainer.best_state is not None:
        trainer.model.load_state_dict(trainer.best_state)
    cfg, stats = trainer.config, trainer.info["numeric_stats"]
    test = load_split(cfg, "test")
    trainer.task.val = MultimodalBatches(test.texts, standardize(test.numeric, stats), test.targets,
                                         trainer.tokenizer, batch_size=cfg.data.batch_size,
                                         max_len=cfg.model.max_len, shuffle=False, mode="uneven")
    metrics = trainer.evaluate(None)
    summary["test"] = {"test_" + k[4:]: v for k, v in metrics.items() if k.startswith("val_")}
    summary["test"]["tested_step"] = trainer.stopper.best_step or summary["steps_done"]
    if trainer.run_dir is not None:
        write_summary(trainer.run_dir / "summary.json", summary)
    return summary


def ridge_run(cfg: CompareConfig, seed: int, run_dir: Path) -> dict[str, Any]:
    """The ``ridge`` row for one seed: scikit-learn's ``RidgeCV`` on the standardised numeric inputs alone.

    It learns from the rows the networks train on (the training split minus that run's validation slice),
    standardised with their statistics (a missing value becomes the mean), and picks its penalty among
    :data:`RIDGE_ALPHAS` by leave-one-out cross-validation on them. ``params`` counts its coefficients (the
    intercept aside); ``train_s`` is the fit, cross-validation included. Written to ``run_dir/ridge.json``.
    """
    try:
        from sklearn.linear_model import RidgeCV
    except ModuleNotFoundError:
        raise ValueError("the ridge candidate needs scikit-learn: pip install scikit-learn") from None
    from linmix.train.run import numeric_statistics, standardize

    base = cfg.base.with_overrides({"run.seed": seed})
    train, val, test = (load_split(base, split) for split in ("train", "valid", "test"))
    stats = numeric_statistics(train.numeric, train.targets)
    started = time.perf_counter()
    model = RidgeCV(alphas=RIDGE_ALPHAS).fit(standardize(train.numeric, stats), train.targets.astype(np.float64))
    train_s = time.perf_counter() - started
    measured = {**scores(model.predict(standardize(val.numeric, stats)), val.targets, "val"),
                **scores(model.predict(standardize(test.numeric, stats)), test.targets, "test")}
    record = {"candidate": "ridge", "seed": seed, "lr": None, "d_model": None, "params": int(model.coef_.size),
              "tokens_per_s": None, "s_per_epoch": None, "train_s": train_s, "wall_s": train_s,
              "status": "completed", "run_dir": str(run_dir), "steps": None, "alpha": float(model.alpha_),
              "numeric_fields": train.numeric_fields, "coefficients": [float(c) for c in model.coef_],
              "target_mean": stats["target_mean"], "target_std": stats["target_std"], **measured}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "ridge.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def header_lines(cfg: CompareConfig, rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    """What a multimodal table needs said beside the common header: target and its scaling, inputs,
    validation and test, the ridge reference, what the speed-up measures, and the claim's verdict."""
    data, run = cfg.base.data, cfg.base.run
    net = next((r for r in runs if r["candidate"] != "ridge"), None)
    stats = (net or runs[0]).get("target_mean"), (net or runs[0]).get("target_std")
    fields = next((r["numeric_fields"] for r in runs if r.get("numeric_fields") is not None), [])
    scaling = (f" (train mean {stats[0]:.3f}, std {stats[1]:.3f})" if None not in stats else "")
    dropped = f"; left out: {', '.join(data.drop_features)}" if data.drop_features else ""
    val = (f"a seeded {data.valid_fraction:.0%} of the training split (a new slice per seed)"
           if data.valid_fraction is not None else "the test split itself (no valid_fraction: not held out)")
    test_n = next((int(r["test_examples"]) for r in runs if r.get("test_examples")), 0)
    return (f"- target: {data.target}, in its own units; the networks minimise MSE on it standardised with "
            f"the training rows' mean and std{scaling}, and MAE, RMSE and R^2 are reported on the original "
            f"scale. The papers' numbers use their own scaling of the target, so only the comparison between "
            f"rows carries over\n"
            f"- numeric inputs: {', '.join(fields) or 'none'}{dropped}\n"
            f"- validation: {val}, for early stopping (patience {run.patience} evaluations every "
            f"{run.eval_every} steps), each network's LR and the weights it is tested with (its best "
            f"validation evaluation); test: the held-out test split ({test_n:,} rows), scored once\n"
            f"- ridge: scikit-learn RidgeCV on the standardised numeric inputs alone, fitted on the networks' "
            f"training rows, penalty by leave-one-out CV; params = its coefficients, train s = its fit\n"
            f"- train s: training seconds (median step time x steps; evaluation excluded); speed-up: the "
            f"baseline's train s over the candidate's (early stopping can end runs at different steps)\n"
            f"- {claim_sentence(rows)}\n")


def claim_sentence(rows: list[dict[str, Any]]) -> str:
    """The papers' claim and whether this run's table supports it (computed from ``rows``, never assumed).

    It holds when the challenger's mean test MAE is lower, its mean R^2 higher and its training at least
    :data:`PAPER_SPEEDUP`'s lower end times faster than the reference's; a gap smaller than the spread
    over runs is said to be one."""
    (a, b), (pa, pb) = CLAIM, (PAPER[CLAIM[0]], PAPER[CLAIM[1]])
    claim = (f"claim (the summation papers): {a} beats {b} (papers: MAE {pa[0]:.4f} vs {pb[0]:.4f}, R^2 "
             f"{pa[1]:.3f} vs {pb[1]:.3f}) at {PAPER_SPEEDUP[0]:g}-{PAPER_SPEEDUP[1]:g}x the speed. ")
    by = {r["candidate"]: r for r in rows}
    if a not in by or b not in by:
        return claim + f"Not checked: this run has no {a if a not in by else b} row."
    x, y = by[a], by[b]
    values = [x["test_mae"], y["test_mae"], x["test_r2"], y["test_r2"], x["train_s"], y["train_s"]]
    if not all(v is not None and math.isfinite(v) for v in values):
        return claim + "Not checked: a metric of one of the two rows is missing."
    speed = y["train_s"] / x["train_s"]
    tokens = (x["tokens_per_s"] / y["tokens_per_s"]
              if all(v and math.isfinite(v) for v in (x["tokens_per_s"], y["tokens_per_s"])) else float("nan"))
    failed = [text for text, ok in (("MAE not lower", x["test_mae"] < y["test_mae"]),
                                    ("R^2 not higher", x["test_r2"] > y["test_r2"]),
                                    (f"less than {PAPER_SPEEDUP[0]:g}x faster", speed >= PAPER_SPEEDUP[0])) if not ok]
    verdict = "It holds in this run." if not failed else f"It does not hold in this run: {', '.join(failed)}."
    close = [label for m, label in (("test_mae", "MAE"), ("test_r2", "R^2"))
             if abs(x[m] - y[m]) < max(x.get(f"{m}_std") or 0.0, y.get(f"{m}_std") or 0.0)]
    spread = (f" The {' and '.join(close)} {'gaps are' if len(close) > 1 else 'gap is'} smaller than the "
              "spread over runs (std)." if close else "")
    return (claim + f"This run: MAE {x['test_mae']:.4f} vs {y['test_mae']:.4f}, R^2 {x['test_r2']:.3f} vs "
            f"{y['test_r2']:.3f}, {speed:.2f}x the training speed (train s; {tokens:.2f}x train tokens/s). "
            + verdict + spread)
