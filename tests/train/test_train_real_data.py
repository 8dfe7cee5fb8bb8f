"""Short runs on the real datasets ($LINMIX_DATA; skipped without it): every task wires up end to end."""
from __future__ import annotations

import json
import math

import pytest

from linmix.train import train_config, run_training

pytestmark = pytest.mark.slow

TINY = dict(d_model=16, n_heads=2, layers="summation", warmup=1, eval_batches=1, progress=False)


def test_lm_tinyshakespeare_defaults_resolve_and_train(data_dir, tmp_path):
    summary = run_training(train_config(task="lm", data_dir=str(data_dir), out=str(tmp_path / "lm"), steps=5,
                                       eval_every=5, max_len=32, batch_size=4, **TINY))
    cfg = summary["config"]
    assert (cfg["data"]["dataset"], cfg["data"]["tokenizer"]) == ("tinyshakespeare", "char")
    assert summary["vocab_size"] == 67  # 65 characters + <pad> + <unk>
    assert summary["train_tokens"] == 1_003_854 and summary["val_tokens"] == 111_540
    assert math.isfinite(summary["final"]["val_loss"])


def test_classify_reuters_r8(data_dir, tmp_path):
    summary = run_training(train_config(task="classify", dataset="reuters-r8", data_dir=str(data_dir),
                                       out=str(tmp_path / "r8"), steps=8, eval_every=8, max_len=64, batch_size=16,
                                       **TINY))
    assert summary["num_classes"] == 8 and summary["final"]["val_examples"] == 2189
    assert summary["config"]["data"]["vocab_size"] == 10_000 and summary["config"]["data"]["tokenizer"] == "word"


def test_multimodal_clothing_reviews(data_dir, tmp_path):
    out = tmp_path / "mm"
    summary = run_training(train_config(task="multimodal", data_dir=str(data_dir), out=str(out), steps=8,
                                       eval_every=8, max_len=32, batch_size=16, vocab_size=2000, **TINY))
    stats = json.loads((out / "numeric_stats.json").read_text())
    assert stats["target"] == "Rating" and stats["numeric_fields"] == ["Age", "Positive Feedback Count",
                                                                       "Recommended IND"]
    assert 3.9 < stats["target_mean"] < 4.4
    assert summary["final"]["val_examples"] == 4529 and summary["final"]["val_rmse"] < 2.0
