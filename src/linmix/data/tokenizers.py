"""Tokenizers behind one small interface, so models and batchers need not care which one is used.

Every tokenizer has ``encode(str) -> list[int]``, ``encode_batch(list[str])``,
``decode(list[int]) -> str``, ``vocab_size``, ``pad_id``, ``unk_id`` (``None`` when it cannot
produce unknowns), ``save(dir)`` and ``load(dir)``. A saved folder always holds
``tokenizer_config.json`` whose ``"type"`` field lets :func:`load_tokenizer` pick the class;
Hugging Face-backed tokenizers also write the ``tokenizers`` library's own ``tokenizer.json``.

* :class:`CharTokenizer` — one id per character of the training text; exact round trip on any
  text made of seen characters (the char-level LM baseline, nanoGPT ``shakespeare_char``).
* :class:`WordTokenizer` — lower-cased regex words, the ``vocab_size`` most frequent kept
  (10,000 by default, as the summation papers' classifiers used); lossy by design.
* :class:`~linmix.data.bpe.BPETokenizer` / :func:`~linmix.data.bpe.hub_tokenizer` — byte-level BPE and
  pretrained Hub tokenizers, backed by Hugging Face ``tokenizers`` (in :mod:`linmix.data.bpe`).

:func:`build_tokenizer` trains any of char / word / bpe by name; :func:`load_tokenizer` loads any saved one.
"""
from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

CONFIG_FILE = "tokenizer_config.json"
PAD, UNK = "<pad>", "<unk>"
DEFAULT_WORD_VOCAB = 10_000

PathLike = str | os.PathLike[str]

_REGISTRY: dict[str, type[Tokenizer]] = {}


class Tokenizer(ABC):
    """The common interface; subclasses set ``kind`` (the saved ``"type"``) and register themselves."""

    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _REGISTRY[cls.kind] = cls

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids; every id this tokenizer produces is in ``range(vocab_size)``."""

    @property
    @abstractmethod
    def pad_id(self) -> int:
        """The id used to pad batches (masked out by the models)."""

    @property
    @abstractmethod
    def unk_id(self) -> int | None:
        """The id for out-of-vocabulary input, or ``None`` when there is no such thing."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text for ``ids``; padding is dropped."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` for many texts (Hugging Face-backed tokenizers do this in parallel)."""
        return [self.encode(t) for t in texts]

    @abstractmethod
    def _config(self) -> dict[str, Any]:
        """The JSON-serialisable state written to ``tokenizer_config.json`` (besides ``type``)."""

    def save(self, directory: PathLike) -> Path:
        """Write this tokenizer into ``directory`` (created if needed); returns the folder."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"type": self.kind, **self._config()}
        (folder / CONFIG_FILE).write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, directory: PathLike) -> Tokenizer:
        """Read a tokenizer saved by :meth:`save`; checks that the saved type is this class's."""
        folder = Path(directory)
        config = _read_config(folder)
        if config.get("type") != cls.kind:
            raise ValueError(f"{folder} holds a {config.get('type')!r} tokenizer, not {cls.kind!r}")
        return cls._from_config(folder, config)

    @classmethod
    @abstractmethod
    def _from_config(cls, folder: Path, config: dict[str, Any]) -> Tokenizer:
        """Rebuild from a saved folder and its parsed config."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class _VocabTokenizer(Tokenizer):
    """Shared code of the char and word tokenizers: ``<pad>`` = 0, ``<unk>`` = 1, then the vocabulary."""

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tokens[:2] != [PAD, UNK]:
            tokens = [PAD, UNK] + [t for t in tokens if t not in (PAD, UNK)]
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary has duplicate tokens")
        self.itos: list[str] = tokens
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    def _config(self) -> dict[str, Any]:
        return {"pad_token": PAD, "unk_token": UNK, "vocab": self.itos}

    @classmethod
    def _from_config(cls, folder: Path, config: dict[str, Any]) -> Tokenizer:
        return cls(config["vocab"])


class CharTokenizer(_VocabTokenizer):
    """One id per character seen in training; unseen characters map to ``<unk>``.

    Ids: ``<pad>`` = 0, ``<unk>`` = 1, then the training characters in sorted order (so Tiny
    Shakespeare's 65 characters give ``vocab_size`` 67). ``decode`` drops padding and writes
    ``<unk>`` as U+FFFD, so ``decode(encode(s)) == s`` exactly whenever every character of ``s``
    was seen in training.
    """

    kind = "char"
    UNK_CHAR = "\ufffd"

    @classmethod
    def train(cls, texts: str | Iterable[str]) -> CharTokenizer:
        """Vocabulary = the set of characters in ``texts`` (one string or many)."""
        chars: set[str] = set()
        for t in [texts] if isinstance(texts, str) else texts:
            chars.update(t)
        return cls(sorted(chars))

    def encode(self, text: str) -> list[int]:
        get = self.stoi.get
        return [get(c, 1) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == 0:
                continue
            out.append(self.UNK_CHAR if i == 1 else self.itos[i])
        return "".join(out)


class WordTokenizer(_VocabTokenizer):
    """Lower-cased regex words with a frequency-ranked vocabulary of ``vocab_size`` ids.

    Normalisation: lower-case, HTML line breaks (``<br />``, frequent in IMDB) become spaces; then
    tokens are runs of word characters (keeping one inner apostrophe, ``don't``) or single
    punctuation characters. ``vocab_size`` counts ``<pad>`` (0) and ``<unk>`` (1); ties in
    frequency are broken alphabetically so training is deterministic. ``decode`` joins tokens with
    spaces (lossy: case and spacing are not kept).
    """

    kind = "word"
    _BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
    _TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")

    @classmethod
    def tokenize(cls, text: str) -> list[str]:
        """The word strings of ``text`` (before mapping to ids)."""
        return cls._TOKEN.findall(cls._BR.sub(" ", text.lower()))

    @classmethod
    def train(
        cls, texts: str | Iterable[str], vocab_size: int = DEFAULT_WORD_VOCAB, min_freq: int = 1
    ) -> WordTokenizer:
        """Keep the ``vocab_size - 2`` most frequent words occurring at least ``min_freq`` times."""
        if vocab_size < 3:
            raise ValueError(f"vocab_size must be at least 3 (<pad>, <unk>, one word), got {vocab_size}")
        counts: Counter[str] = Counter()
        for t in [texts] if isinstance(texts, str) else texts:
            counts.update(cls.tokenize(t))
        ranked = sorted((w for w, c in counts.items() if c >= min_freq and w not in (PAD, UNK)),
                        key=lambda w: (-counts[w], w))
        return cls(ranked[: vocab_size - 2])

    def encode(self, text: str) -> list[int]:
        get = self.stoi.get
        return [get(w, 1) for w in self.tokenize(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.itos[int(i)] for i in ids if int(i) != 0)


def build_tokenizer(kind: str, texts: str | Iterable[str], vocab_size: int | None = None,
                    **kwargs: Any) -> Tokenizer:
    """Train a tokenizer of ``kind`` (``"char"``, ``"word"``, ``"bpe"``) on the training ``texts``.

    ``vocab_size`` defaults to 10,000 for ``word`` and 8,192 for ``bpe``; it is ignored for
    ``char`` (the vocabulary is whatever characters occur). Extra keyword options go to the
    class's ``train`` (``min_freq`` for word, ``min_frequency`` for bpe).
    """
    key = kind.strip().lower()
    if key == "char":
        return CharTokenizer.train(texts)
    if key == "word":
        return WordTokenizer.train(texts, vocab_size or DEFAULT_WORD_VOCAB, **kwargs)
    if key == "bpe":
        from linmix.data.bpe import DEFAULT_BPE_VOCAB, BPETokenizer  # it subclasses Tokenizer

        return BPETokenizer.train(texts, vocab_size or DEFAULT_BPE_VOCAB, **kwargs)
    raise ValueError(f"unknown tokenizer kind {kind!r}; use one of: char, word, bpe "
                     f"(or hub_tokenizer(name) for a pretrained one)")


def load_tokenizer(directory: PathLike) -> Tokenizer:
    """Load any tokenizer saved by ``save``, choosing the class from ``tokenizer_config.json``.

    A folder holding only a Hugging Face ``tokenizer.json`` (no linmix config) loads as a
    :class:`HubTokenizer`.
    """
    from linmix.data.bpe import HF_FILE, HubTokenizer  # importing it registers the Hugging Face-backed types

    folder = Path(directory)
    if not (folder / CONFIG_FILE).is_file() and (folder / HF_FILE).is_file():
        return HubTokenizer.from_file(folder / HF_FILE, source=str(folder))
    config = _read_config(folder)
    kind = config.get("type")
    if kind not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"{folder / CONFIG_FILE}: unknown tokenizer type {kind!r}; known: {known}")
    return _REGISTRY[kind]._from_config(folder, config)


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no saved tokenizer in {folder}: {CONFIG_FILE} is missing")
    return json.loads(path.read_text(encoding="utf-8"))


__all__ = ["CharTokenizer", "Tokenizer", "WordTokenizer", "build_tokenizer", "load_tokenizer"]
