"""Fixtures for the data-layer tests: no network ever, a private cache, a fake data root (the real one is
the top-level ``data_dir`` fixture)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

SHAKESPEARE = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n"
)


@pytest.fixture(autouse=True)
def offline_private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test runs offline and with an empty cache of its own, so nothing outside leaks in."""
    for var in ("LINMIX_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    cache = tmp_path_factory.mktemp("linmix-cache")
    monkeypatch.setenv("LINMIX_CACHE", str(cache))
    return cache


def _jsonl(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def _classification(folder: Path, names: list[str], train: list[tuple[str, int]],
                    test: list[tuple[str, int]], ext: str = "jsonl") -> None:
    folder.mkdir(parents=True)
    (folder / "labels.json").write_text(json.dumps(names), encoding="utf-8")
    _jsonl(folder / f"train.{ext}", [{"text": t, "label": y} for t, y in train])
    _jsonl(folder / f"test.{ext}", [{"text": t, "label": y} for t, y in test])


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A tiny data root in the shared layout (tinyshakespeare without valid.txt, as some copies are)."""
    root = tmp_path / "data"
    ts = root / "tinyshakespeare"
    ts.mkdir(parents=True)
    (ts / "input.txt").write_text(SHAKESPEARE, encoding="utf-8")
    (ts / "train.txt").write_text(SHAKESPEARE[: int(0.9 * len(SHAKESPEARE))], encoding="utf-8")

    wt = root / "wikitext2"
    wt.mkdir()
    for split in ("train", "valid", "test"):
        (wt / f"{split}.txt").write_text(f" \n = {split} = \n \n the <unk> of {split} . \n", encoding="utf-8")

    _classification(root / "imdb", ["neg", "pos"],
                    [("bad film<br />awful", 0), ("great film", 1), ("fine", 1)],
                    [("dull", 0), ("superb", 1)], ext="jsonl.gz")
    _classification(root / "ag_news", ["World", "Sports", "Business", "Sci/Tech"],
                    [(f"news {i}", i % 4) for i in range(20)], [(f"test {i}", i % 4) for i in range(8)])
    _classification(root / "20newsgroups", ["a.b", "c.d"],
                    [("post one", 0), ("", 1), ("   \n ", 0), ("post two", 1)], [("", 0), ("reply", 1)])
    _classification(root / "reuters21578" / "r52", [f"t{i}" for i in range(52)],
                    [(f"r52 doc {i}", i) for i in range(52)], [("r52 test", 3)])
    _classification(root / "reuters21578" / "r8", [f"t{i}" for i in range(8)],
                    [(f"r8 doc {i}", i) for i in range(8)], [("r8 test", 5)])

    wc = root / "womens_clothing_reviews"
    wc.mkdir()
    (wc / "schema.json").write_text(json.dumps({
        "text_field": "text", "target_field": "Rating",
        "numeric_input_fields": ["Age", "Positive Feedback Count", "Recommended IND"],
    }), encoding="utf-8")
    rows = [
        {"text": " Lovely dress ", "Title": "Love it", "Age": 30, "Positive Feedback Count": 2,
         "Recommended IND": 1, "Rating": 5, "Clothing ID": 1, "id": 0},
        {"text": "Too small", "Title": None, "Age": 51, "Positive Feedback Count": 0,
         "Recommended IND": 0, "Rating": 2, "Clothing ID": 2, "id": 1},
        {"text": "Okay", "Title": "", "Age": 40, "Positive Feedback Count": 7,
         "Recommended IND": 1, "Rating": 3, "Clothing ID": 3, "id": 2},
    ]
    _jsonl(wc / "train.jsonl", rows)
    _jsonl(wc / "test.jsonl", rows[:1])
    return root
