"""``20newsgroups_raw``: the unstripped 20 Newsgroups messages, read from ``train_raw``/``test_raw.jsonl.gz``
beside the stripped files (sharing their ``labels.json``); no download, so a missing file is a clear error."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from linmix.data import load_classification, load_lm_text
from linmix.data.sources import dataset_spec, known_datasets

RAW = "From: someone@example.com\nSubject: {topic}\n\nbody about {topic}\n-- \nsignature"


def _gz(path: Path, rows: list[dict]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


def _root(tmp_path: Path, raw: bool = True, test_raw: bool = True) -> Path:
    """A data root whose ``20newsgroups/`` holds the stripped files and (unless told) the raw ones."""
    folder = tmp_path / "data" / "20newsgroups"
    folder.mkdir(parents=True)
    (folder / "labels.json").write_text(json.dumps(["alt.atheism", "sci.space"]))
    (folder / "train.jsonl").write_text(json.dumps({"text": "body about space", "label": 1}) + "\n")
    (folder / "test.jsonl").write_text(json.dumps({"text": "", "label": 0}) + "\n")
    if raw:
        _gz(folder / "train_raw.jsonl.gz", [{"text": RAW.format(topic=t), "label": y}
                                            for t, y in (("space", 1), ("gods", 0), ("orbits", 1))])
    if test_raw:
        _gz(folder / "test_raw.jsonl.gz", [{"text": RAW.format(topic="moon"), "label": 1}])
    return folder.parent


def test_raw_newsgroups_keeps_headers_and_shares_the_labels(tmp_path):
    root = _root(tmp_path)
    train = load_classification("20newsgroups_raw", "train", root)
    assert train.name == "20newsgroups_raw" and len(train) == 3 and train.labels == [1, 0, 1]
    assert train.texts[0].startswith("From: someone@example.com\nSubject: space")
    assert train.label_names == ["alt.atheism", "sci.space"]
    valid = load_classification("20newsgroups_raw", "valid", root)  # the test split, like 20newsgroups
    assert valid.texts == [RAW.format(topic="moon")] and valid.dropped == 0
    assert load_classification("20newsgroups", "train", root).texts == ["body about space"]  # untouched
    assert "Subject: gods" in load_lm_text("20newsgroups_raw", "train", root)
    assert "20newsgroups_raw" in known_datasets() and dataset_spec("20newsgroups_raw").download is None


def test_raw_newsgroups_is_found_through_linmix_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LINMIX_DATA", str(_root(tmp_path)))
    assert len(load_classification("20newsgroups_raw", "test")) == 1


@pytest.mark.parametrize("missing", ["train_raw.jsonl.gz", "test_raw.jsonl.gz"])
def test_a_missing_raw_file_is_named_with_where_to_put_it(tmp_path, monkeypatch, missing):
    root = _root(tmp_path, raw=missing != "train_raw.jsonl.gz", test_raw=missing != "test_raw.jsonl.gz")
    monkeypatch.setenv("LINMIX_DATA", str(root))
    with pytest.raises(FileNotFoundError) as err:
        load_classification("20newsgroups_raw", "train")
    text = str(err.value)
    assert missing in text and "LINMIX_DATA" in text and "--data-dir" in text
    assert "download: none available" in text
    with pytest.raises(FileNotFoundError, match=missing):
        load_classification("20newsgroups_raw", "train", root)
