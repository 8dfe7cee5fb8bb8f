"""Loaders that turn a dataset's files into plain Python/numpy containers.

Three task shapes, one loader each:

* :func:`load_lm_text` -> ``str``: a language-modelling corpus (Tiny Shakespeare, WikiText-2, or the
  texts of a classification dataset joined by newlines, as the summation papers did for IMDB / AG News).
* :func:`load_classification` -> :class:`TextClassificationData`: texts, integer labels, label names.
* :func:`load_regression` -> :class:`MultimodalData`: texts, a float32 numeric matrix and float32 targets.

Split names are ``"train"``, ``"valid"`` (aliases ``"validation"``, ``"val"``) and ``"test"``.
Datasets without an official validation split (IMDB, AG News, 20 Newsgroups, Reuters, clothing
reviews) use their **test split for "valid"** by default, so model selection and the final number
come from the same data. Pass ``valid_fraction=f`` to carve a seeded validation slice of the
training split instead; then ``"train"`` is the rest of the training split, disjoint from it.
Tiny Shakespeare has no test split, so its ``"test"`` is its validation split.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from linmix.data.sources import dataset_spec, resolve_dataset

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

SPLIT_ALIASES = {"train": "train", "valid": "valid", "validation": "valid", "val": "valid", "test": "test"}

# nanoGPT's shakespeare_char split of Tiny Shakespeare: the first 90% is train.
TINYSHAKESPEARE_TRAIN_FRACTION = 0.9


@dataclass
class TextClassificationData:
    """One split of a single-label text-classification dataset.

    ``labels[i]`` indexes ``label_names``; ``dropped`` counts records removed because their text
    was empty (after stripping whitespace), e.g. the 300 / 215 empty 20 Newsgroups posts.
    """

    name: str
    split: str
    texts: list[str]
    labels: list[int]
    label_names: list[str]
    dropped: int = 0

    @property
    def num_classes(self) -> int:
        """Number of classes (the length of ``label_names``, even if some are absent here)."""
        return len(self.label_names)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class MultimodalData:
    """One split of a text + numeric -> number regression dataset.

    ``numeric`` is ``float32 [N, F]`` with columns named by ``numeric_fields``; ``targets`` is
    ``float32 [N]`` holding ``target_field``. Values are raw (unscaled); use :meth:`numeric_stats`
    on the training split and :meth:`standardized` on every split before feeding a network.
    """

    name: str
    split: str
    texts: list[str]
    numeric: np.ndarray
    targets: np.ndarray
    numeric_fields: list[str] = field(default_factory=list)
    target_field: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def numeric_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-column mean and standard deviation (std 1 where a column is constant)."""
        mean = self.numeric.mean(axis=0).astype(np.float32)
        std = self.numeric.std(axis=0).astype(np.float32)
        return mean, np.where(std > 0, std, np.float32(1.0)).astype(np.float32)

    def standardized(self, mean: np.ndarray, std: np.ndarray) -> MultimodalData:
        """A copy with ``numeric`` replaced by ``(numeric - mean) / std`` (statistics from train)."""
        return replace(self, numeric=((self.numeric - mean) / std).astype(np.float32))


def normalize_split(split: str) -> str:
    """Map a split name or alias to ``"train"``, ``"valid"`` or ``"test"`` (``ValueError`` otherwise)."""
    key = split.strip().lower()
    if key not in SPLIT_ALIASES:
        raise ValueError(f"unknown split {split!r}; use one of: {', '.join(SPLIT_ALIASES)}")
    return SPLIT_ALIASES[key]


def load_lm_text(
    name: str,
    split: str,
    data_dir: PathLike | None = None,
    *,
    valid_fraction: float | None = None,
    seed: int = 0,
) -> str:
    """The text of one split of a language-modelling corpus.

    ``tinyshakespeare``: ``train.txt`` / ``valid.txt``; when ``valid.txt`` is absent the validation
    text is ``input.txt[len(train.txt):]`` (nanoGPT's 90/10 split), and when only ``input.txt``
    exists the split point is ``int(0.9 * len)``. ``"test"`` maps to the validation text.
    ``wikitext2``: the official ``train/valid/test.txt`` (tokenized v1, ``<unk>`` included).
    Classification datasets (``imdb``, ``ag_news``, ...): their texts joined with ``"\\n"``, with the
    split mapping and ``valid_fraction``/``seed`` of :func:`load_classification`.
    """
    spec = dataset_spec(name)
    s = normalize_split(split)
    if spec.task == "classification":
        data = load_classification(name, s, data_dir, valid_fraction=valid_fraction, seed=seed)
        return "\n".join(data.texts)
    if spec.task != "lm":
        raise ValueError(f"dataset {name!r} is a {spec.task} dataset, not a language-modelling corpus")
    if valid_fraction is not None:
        raise ValueError(f"dataset {name!r} has an official validation split; valid_fraction is not supported")
    folder = resolve_dataset(name, data_dir)
    if spec.name == "tinyshakespeare":
        return _tinyshakespeare(folder, "valid" if s == "test" else s)
    return _read_text(folder / f"{s}.txt")


def load_classification(
    name: str,
    split: str,
    data_dir: PathLike | None = None,
    *,
    variant: str | None = None,
    valid_fraction: float | None = None,
    seed: int = 0,
) -> TextClassificationData:
    """One split of a single-label classification dataset, with empty texts filtered out.

    Datasets: ``imdb`` (25,000 / 25,000), ``ag_news`` (the shared copy's train split is a
    class-balanced **20,000-row subset** of the official 120,000, see SOURCES.md; its test split is
    the official 7,600; a hub download has the full train split), ``20newsgroups`` (headers, footers
    and quotes stripped; 300 train / 215 test posts are empty after stripping and are dropped, so
    11,014 / 7,317 remain; ``20newsgroups_raw``: the same 11,314 / 7,532 messages unstripped, headers
    included, from ``train_raw``/``test_raw.jsonl.gz``), ``reuters`` = R52 (6,532 / 2,568, 52 classes;
    ``variant="r8"`` or name ``reuters-r8`` for R8: 5,485 / 2,189, 8 classes). Records keep the files' order (which is
    grouped by class or id), so shuffle when batching. The number of dropped empty texts is in
    ``.dropped`` and logged.
    """
    spec = dataset_spec(name, variant)
    if spec.task != "classification":
        raise ValueError(f"dataset {name!r} is a {spec.task} dataset, not a classification dataset")
    s = normalize_split(split)
    folder = resolve_dataset(name, data_dir, variant=variant)
    label_names = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    texts: list[str] = []
    labels: list[int] = []
    dropped = 0
    for row in _read_jsonl(folder, _file_split(s, valid_fraction) + spec.split_suffix):
        text, label = row["text"], int(row["label"])
        if not 0 <= label < len(label_names):
            raise ValueError(f"{name} {s}: label {label} outside 0..{len(label_names) - 1}")
        if not text.strip():
            dropped += 1
            continue
        texts.append(text)
        labels.append(label)
    if dropped:
        log.info("%s %s: dropped %d empty texts, %d remain", spec.name, s, dropped, len(texts))
    keep = _carve(len(texts), s, valid_fraction, seed)
    if keep is not None:
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    return TextClassificationData(spec.name, s, texts, labels, list(label_names), dropped)


def load_regression(
    name: str = "clothing_reviews",
    split: str = "train",
    data_dir: PathLike | None = None,
    *,
    numeric_fields: Sequence[str] | None = None,
    drop_fields: Sequence[str] = (),
    target: str = "Rating",
    include_title: bool = True,
    valid_fraction: float | None = None,
    seed: int = 0,
) -> MultimodalData:
    """One split of a text + numeric regression dataset (Women's E-Commerce Clothing Reviews).

    The text is the review body, with its ``Title`` prepended on its own line when present (and
    ``include_title``). ``numeric_fields`` defaults to ``schema.json``'s ``numeric_input_fields``
    (Age, Positive Feedback Count, Recommended IND) minus the target; naming the target among the
    inputs is a ``ValueError`` (label leakage). ``drop_fields`` removes inputs from that list (e.g.
    ``Recommended IND``, which nearly determines ``Rating``); a name that is not one of them is a
    ``ValueError`` listing the inputs. Missing numeric values become NaN. The shared
    files have 18,112 train / 4,529 test rows (a seeded 80/20 split; no validation split).
    """
    spec = dataset_spec(name)
    if spec.task != "regression":
        raise ValueError(f"dataset {name!r} is a {spec.task} dataset, not a regression dataset")
    s = normalize_split(split)
    folder = resolve_dataset(name, data_dir)
    schema = json.loads((folder / "schema.json").read_text(encoding="utf-8"))
    text_field = schema.get("text_field", "text")
    if numeric_fields is None:
        fields = [f for f in schema.get("numeric_input_fields", []) if f != target]
    else:
        fields = list(numeric_fields)
        if target in fields:
            raise ValueError(f"target {target!r} is also a numeric input; remove it from numeric_fields")
    drop = [drop_fields] if isinstance(drop_fields, str) else list(drop_fields)
    unknown = [f for f in drop if f not in fields]
    if unknown:
        raise ValueError(f"cannot drop {', '.join(map(repr, unknown))}: the numeric inputs of {name} are "
                         f"{', '.join(map(repr, fields))}")
    fields = [f for f in fields if f not in drop]
    if drop and not fields:
        raise ValueError(f"dropping {', '.join(map(repr, drop))} leaves {name} without numeric inputs")
    texts: list[str] = []
    numeric: list[list[float]] = []
    targets: list[float] = []
    for i, row in enumerate(_read_jsonl(folder, _file_split(s, valid_fraction))):
        if target not in row or row[target] is None:
            raise ValueError(f"{name} {s}: record {i} has no target {target!r}")
        missing = [f for f in fields if f not in row]
        if missing:
            raise ValueError(f"{name} {s}: record {i} lacks numeric field(s) {missing}")
        body = (row.get(text_field) or "").strip()
        title = (row.get("Title") or "").strip() if include_title else ""
        texts.append(f"{title}\n{body}" if title else body)
        numeric.append([float("nan") if row[f] is None else float(row[f]) for f in fields])
        targets.append(float(row[target]))
    num = np.asarray(numeric, dtype=np.float32).reshape(len(texts), len(fields))
    tgt = np.asarray(targets, dtype=np.float32)
    keep = _carve(len(texts), s, valid_fraction, seed)
    if keep is not None:
        texts, num, tgt = [texts[i] for i in keep], num[keep], tgt[keep]
    return MultimodalData(spec.name, s, texts, num, tgt, fields, target)


def _file_split(split: str, valid_fraction: float | None) -> str:
    """The file a split is read from: train for carved validation, test for default validation."""
    if split == "valid":
        return "train" if valid_fraction is not None else "test"
    return split


def _carve(n: int, split: str, valid_fraction: float | None, seed: int) -> list[int] | None:
    """Indices kept when a validation slice is carved from train (sorted, so file order is kept)."""
    if valid_fraction is None or split == "test":
        return None
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_valid = max(1, int(round(valid_fraction * n)))
    chosen = order[:n_valid] if split == "valid" else order[n_valid:]
    return sorted(chosen)


def _tinyshakespeare(folder: Path, split: str) -> str:
    train_file, valid_file, input_file = folder / "train.txt", folder / "valid.txt", folder / "input.txt"
    if split == "train":
        if train_file.is_file():
            return _read_text(train_file)
        text = _read_text(input_file)
        return text[: int(TINYSHAKESPEARE_TRAIN_FRACTION * len(text))]
    if valid_file.is_file():
        return _read_text(valid_file)
    if not input_file.is_file():
        raise FileNotFoundError(f"{folder} has neither valid.txt nor input.txt to take the validation text from")
    text = _read_text(input_file)
    if train_file.is_file():
        n_train = len(_read_text(train_file))
    else:
        n_train = int(TINYSHAKESPEARE_TRAIN_FRACTION * len(text))
    return text[n_train:]


def _read_text(path: Path) -> str:
    """UTF-8 text, newlines untouched (``newline=""``) so character counts match the files."""
    if not path.is_file():
        raise FileNotFoundError(f"missing split file {path}")
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def _read_jsonl(folder: Path, split: str) -> Iterator[dict]:
    """Records of ``<split>.jsonl`` or ``<split>.jsonl.gz``; each physical line is one record."""
    plain, packed = folder / f"{split}.jsonl", folder / f"{split}.jsonl.gz"
    if plain.is_file():
        f = open(plain, encoding="utf-8")
    elif packed.is_file():
        f = gzip.open(packed, "rt", encoding="utf-8")
    else:
        raise FileNotFoundError(f"missing split file {plain} (or {packed.name})")
    with f:
        for line in f:
            if line.strip():
                yield json.loads(line)
