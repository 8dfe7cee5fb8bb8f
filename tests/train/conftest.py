"""Fixtures for the training tests: a tiny fake data root (LM text, classification, regression) and helpers."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from train_helpers import WORDS, fake_play


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A data root with small ``tinyshakespeare``, ``ag_news`` and ``womens_clothing_reviews`` folders."""
    root = tmp_path_factory.mktemp("data")
    ts = root / "tinyshakespeare"
    ts.mkdir()
    (ts / "train.txt").write_text(fake_play(40_000, 1))
    (ts / "valid.txt").write_text(fake_play(6_000, 2))

    rng = random.Random(3)
    topics = [["war", "army", "peace"], ["goal", "match", "team"], ["stock", "market", "bank"], ["chip", "code", "web"]]

    def news(n: int) -> list[dict]:
        rows = []
        for _ in range(n):
            label = rng.randrange(4)
            words = [rng.choice(topics[label]) if rng.random() < 0.4 else rng.choice(WORDS)
                     for _ in range(rng.randint(5, 20))]
            rows.append({"text": " ".join(words), "label": label})
        return rows

    ag = root / "ag_news"
    ag.mkdir()
    (ag / "labels.json").write_text(json.dumps(["World", "Sports", "Business", "Sci/Tech"]))
    _write_jsonl(ag / "train.jsonl", news(400))
    _write_jsonl(ag / "test.jsonl", news(100))

    def reviews(n: int) -> list[dict]:
        rows = []
        for i in range(n):
            rating = rng.randint(1, 5)
            mood = ["awful", "bad", "ok", "good", "great"][rating - 1]
            text = " ".join([mood] + [rng.choice(WORDS) for _ in range(rng.randint(3, 15))])
            rows.append({"text": text, "Title": None if i % 3 else "Title", "Age": rng.randint(18, 80),
                         "Positive Feedback Count": None if i % 17 == 0 else rng.randint(0, 20),
                         "Recommended IND": int(rating >= 4), "Rating": rating, "id": i})
        return rows

    cl = root / "womens_clothing_reviews"
    cl.mkdir()
    (cl / "schema.json").write_text(json.dumps({
        "text_field": "text", "target_field": "Rating",
        "numeric_input_fields": ["Age", "Positive Feedback Count", "Recommended IND"]}))
    _write_jsonl(cl / "train.jsonl", reviews(300))
    _write_jsonl(cl / "test.jsonl", reviews(80))
    return root


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread (the shared ``one_thread`` fixture)."""
