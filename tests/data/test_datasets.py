"""Loaders: logic on a tiny fake data root, record counts on the real shared data (SOURCES.md)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from linmix.data import load_classification, load_lm_text, load_regression, normalize_split


# ---------------------------------------------------------------- fake data root (always runs)

def _input_txt(root: Path) -> str:
    return (root / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("with_train_txt", [True, False], ids=["train.txt+input.txt", "input.txt only"])
def test_tinyshakespeare_valid_derived_from_input_when_valid_txt_missing(fake_root: Path, with_train_txt: bool) -> None:
    full = _input_txt(fake_root)
    if not with_train_txt:
        (fake_root / "tinyshakespeare" / "train.txt").unlink()
    train = load_lm_text("tinyshakespeare", "train", fake_root)
    valid = load_lm_text("tinyshakespeare", "valid", fake_root)
    assert not (fake_root / "tinyshakespeare" / "valid.txt").exists()
    assert train + valid == full
    assert len(train) == int(0.9 * len(full))
    assert load_lm_text("tinyshakespeare", "test", fake_root) == valid


def test_tinyshakespeare_valid_txt_used_when_present(fake_root: Path) -> None:
    (fake_root / "tinyshakespeare" / "valid.txt").write_text("VALID", encoding="utf-8")
    assert load_lm_text("tinyshakespeare", "validation", fake_root) == "VALID"


def test_wikitext2_splits_verbatim(fake_root: Path) -> None:
    for split in ("train", "valid", "test"):
        text = load_lm_text("wikitext2", split, fake_root)
        assert text == (fake_root / "wikitext2" / f"{split}.txt").read_text(encoding="utf-8")


def test_lm_text_from_classification_joins_with_newlines(fake_root: Path) -> None:
    assert load_lm_text("imdb", "train", fake_root) == "bad film<br />awful\ngreat film\nfine"
    assert load_lm_text("imdb", "valid", fake_root) == "dull\nsuperb"


def test_lm_text_rejects_regression_dataset(fake_root: Path) -> None:
    with pytest.raises(ValueError, match="regression"):
        load_lm_text("clothing_reviews", "train", fake_root)


def test_split_aliases_and_errors() -> None:
    assert [normalize_split(s) for s in ("train", "val", "validation", "valid", "test")] == \
        ["train", "valid", "valid", "valid", "test"]
    with pytest.raises(ValueError, match="unknown split"):
        normalize_split("dev")


def test_classification_gz_and_labels(fake_root: Path) -> None:
    data = load_classification("imdb", "train", fake_root)
    assert data.texts == ["bad film<br />awful", "great film", "fine"]
    assert data.labels == [0, 1, 1]
    assert data.label_names == ["neg", "pos"] and data.num_classes == 2 and len(data) == 3


def test_empty_texts_dropped_and_counted(fake_root: Path) -> None:
    train = load_classification("20newsgroups", "train", fake_root)
    assert train.texts == ["post one", "post two"] and train.labels == [0, 1] and train.dropped == 2
    test = load_classification("20newsgroups", "test", fake_root)
    assert test.texts == ["reply"] and test.dropped == 1


def test_valid_defaults_to_test_split(fake_root: Path) -> None:
    valid = load_classification("ag_news", "valid", fake_root)
    test = load_classification("ag_news", "test", fake_root)
    assert valid.texts == test.texts and valid.split == "valid"


def test_carved_valid_is_seeded_and_disjoint(fake_root: Path) -> None:
    kw = dict(valid_fraction=0.25, seed=3)
    valid = load_classification("ag_news", "valid", fake_root, **kw)
    train = load_classification("ag_news", "train", fake_root, **kw)
    assert len(valid) == 5 and len(train) == 15
    assert not set(valid.texts) & set(train.texts)
    assert load_classification("ag_news", "valid", fake_root, **kw).texts == valid.texts
    other = load_classification("ag_news", "valid", fake_root, valid_fraction=0.25, seed=4)
    assert other.texts != valid.texts
    with pytest.raises(ValueError, match="valid_fraction"):
        load_classification("ag_news", "valid", fake_root, valid_fraction=1.5)


def test_reuters_default_r52_and_r8_variant(fake_root: Path) -> None:
    assert load_classification("reuters", "train", fake_root).num_classes == 52
    assert load_classification("reuters", "train", fake_root, variant="r8").num_classes == 8
    assert load_classification("reuters-r8", "test", fake_root).labels == [5]


def test_label_out_of_range_rejected(fake_root: Path) -> None:
    (fake_root / "ag_news" / "test.jsonl").write_text(json.dumps({"text": "x", "label": 9}) + "\n")
    with pytest.raises(ValueError, match="label 9"):
        load_classification("ag_news", "test", fake_root)


def test_regression_defaults(fake_root: Path) -> None:
    data = load_regression("clothing_reviews", "train", fake_root)
    assert data.texts == ["Love it\nLovely dress", "Too small", "Okay"]
    assert data.numeric_fields == ["Age", "Positive Feedback Count", "Recommended IND"]
    assert data.numeric.dtype == np.float32 and data.numeric.shape == (3, 3)
    np.testing.assert_array_equal(data.numeric[1], [51, 0, 0])
    assert data.targets.dtype == np.float32 and data.targets.tolist() == [5, 2, 3]
    assert load_regression(split="train", data_dir=fake_root, include_title=False).texts[0] == "Lovely dress"


def test_regression_other_target_and_leakage_guard(fake_root: Path) -> None:
    data = load_regression(split="train", data_dir=fake_root, target="Positive Feedback Count")
    assert data.numeric_fields == ["Age", "Recommended IND"] and data.targets.tolist() == [2, 0, 7]
    with pytest.raises(ValueError, match="also a numeric input"):
        load_regression(split="train", data_dir=fake_root, numeric_fields=["Age", "Rating"])


def test_regression_standardization(fake_root: Path) -> None:
    train = load_regression(split="train", data_dir=fake_root, numeric_fields=["Age", "Clothing ID"])
    mean, std = train.numeric_stats()
    scaled = train.standardized(mean, std)
    np.testing.assert_allclose(scaled.numeric.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(scaled.numeric.std(0), 1, atol=1e-5)
    assert scaled.numeric.dtype == np.float32 and train.numeric[0, 0] == 30


# ---------------------------------------------------------------- real shared data (skipped without LINMIX_DATA)

def test_real_tinyshakespeare(data_dir: Path) -> None:
    train = load_lm_text("tinyshakespeare", "train", data_dir)
    valid = load_lm_text("tinyshakespeare", "valid", data_dir)
    assert (len(train), len(valid)) == (1_003_854, 111_540)
    assert train.startswith("First Citizen:") and len(set(train)) == 65


def test_real_wikitext2_valid(data_dir: Path) -> None:
    valid = load_lm_text("wikitext2", "valid", data_dir)
    assert len(valid) == 1_120_192 and valid.count("\n") == 3_760
    assert len(valid.split()) == 213_886


def test_real_ag_news(data_dir: Path) -> None:
    test = load_classification("ag_news", "test", data_dir)
    assert len(test) == 7_600 and test.label_names == ["World", "Sports", "Business", "Sci/Tech"]
    assert [test.labels.count(k) for k in range(4)] == [1_900] * 4
    assert len(load_classification("ag_news", "train", data_dir)) == 20_000


def test_real_reuters(data_dir: Path) -> None:
    r52 = load_classification("reuters", "train", data_dir)
    assert len(r52) == 6_532 and r52.num_classes == 52 and len(set(r52.labels)) == 52
    assert len(load_classification("reuters", "test", data_dir)) == 2_568
    r8 = load_classification("reuters", "test", data_dir, variant="r8")
    assert len(r8) == 2_189 and r8.num_classes == 8


def test_real_20newsgroups_drops_empty_posts(data_dir: Path) -> None:
    train = load_classification("20newsgroups", "train", data_dir)
    test = load_classification("20newsgroups", "test", data_dir)
    assert (len(train), train.dropped) == (11_314 - 300, 300)
    assert (len(test), test.dropped) == (7_532 - 215, 215)
    assert train.num_classes == 20 and all(t.strip() for t in train.texts)


def test_real_imdb(data_dir: Path) -> None:
    test = load_classification("imdb", "test", data_dir)
    assert len(test) == 25_000 and sum(test.labels) == 12_500 and test.label_names == ["neg", "pos"]


def test_real_clothing_reviews(data_dir: Path) -> None:
    train = load_regression("clothing_reviews", "train", data_dir)
    test = load_regression("clothing_reviews", "test", data_dir)
    assert (len(train), len(test)) == (18_112, 4_529)
    assert train.numeric.shape == (18_112, 3) and not np.isnan(train.numeric).any()
    assert abs(float(train.targets.mean()) - 4.179) < 1e-3
    assert train.texts[0] == "Absolutely wonderful - silky and sexy and comfortable"
    assert train.texts[2].startswith("Some major design flaws\nI had such high hopes")
