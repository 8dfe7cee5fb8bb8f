"""Tokenizers: exact round trips (char, byte-level BPE), word vocab + unk, save/load, hub offline error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from linmix.data import (
    BPETokenizer,
    CharTokenizer,
    HubTokenizer,
    WordTokenizer,
    build_tokenizer,
    hub_tokenizer,
    load_lm_text,
    load_tokenizer,
)

TEXT = "To be, or not to be: that is the question.\nWhether 'tis nobler in the mind to suffer\n" * 20
ODD = "naïve café — 東京 🙂\r\n\ttabs  and\u2028separators\x00!"


def test_char_round_trip_and_unknown() -> None:
    tok = build_tokenizer("char", TEXT)
    assert isinstance(tok, CharTokenizer)
    assert tok.pad_id == 0 and tok.unk_id == 1 and tok.vocab_size == len(set(TEXT)) + 2
    assert tok.decode(tok.encode(TEXT)) == TEXT
    ids = tok.encode("toZ")
    assert ids[-1] == tok.unk_id and tok.decode(ids) == "to\ufffd"
    assert tok.decode([tok.pad_id] + tok.encode("to")) == "to"


def test_char_ids_sorted_and_deterministic() -> None:
    tok = CharTokenizer.train(["ba", "c"])
    assert tok.itos == ["<pad>", "<unk>", "a", "b", "c"]
    assert tok.encode("cab") == [4, 2, 3]


def test_word_vocab_by_frequency_with_unk() -> None:
    texts = ["The cat sat. The cat ran!", "the DOG sat<br />down", "don't stop"]
    tok = build_tokenizer("word", texts, vocab_size=7)
    assert isinstance(tok, WordTokenizer)
    assert tok.itos == ["<pad>", "<unk>", "the", "cat", "sat", "!", "."]  # count ties: alphabetical
    assert tok.encode("The cat flew.") == [2, 3, 1, 6]
    assert tok.decode(tok.encode("THE CAT")) == "the cat"
    assert WordTokenizer.tokenize("Don't<br />STOP!") == ["don't", "stop", "!"]


def test_word_default_size_is_10k() -> None:
    texts = [" ".join(f"w{i}" for i in range(12_000))]
    assert build_tokenizer("word", texts).vocab_size == 10_000


def test_bpe_round_trip_exact_any_text() -> None:
    tok = build_tokenizer("bpe", TEXT, vocab_size=300)
    assert isinstance(tok, BPETokenizer)
    assert tok.vocab_size <= 300 and tok.pad_id == 0 and tok.unk_id is None
    for s in (TEXT, ODD, "", " leading and trailing "):
        assert tok.decode(tok.encode(s)) == s
    assert len(tok.encode(TEXT)) < len(TEXT.encode())
    assert tok.encode_batch([TEXT, ODD]) == [tok.encode(TEXT), tok.encode(ODD)]


def test_bpe_rejects_tiny_vocab() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer("bpe", TEXT, vocab_size=100)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="char, word, bpe"):
        build_tokenizer("sentencepiece", TEXT)


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_save_load_round_trip(kind: str, tmp_path: Path) -> None:
    tok = build_tokenizer(kind, TEXT, vocab_size=300 if kind == "bpe" else 50)
    folder = tok.save(tmp_path / kind)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["type"] == kind
    again = load_tokenizer(folder)
    assert type(again) is type(tok)
    assert (again.vocab_size, again.pad_id, again.unk_id) == (tok.vocab_size, tok.pad_id, tok.unk_id)
    sample = TEXT[:200] + " unseen words Zq"
    assert again.encode(sample) == tok.encode(sample)
    assert again.decode(again.encode(sample)) == tok.decode(tok.encode(sample))
    assert type(tok).load(folder).encode(sample) == tok.encode(sample)


def test_load_checks_type_and_missing(tmp_path: Path) -> None:
    folder = build_tokenizer("char", TEXT).save(tmp_path / "c")
    with pytest.raises(ValueError, match="'char' tokenizer"):
        WordTokenizer.load(folder)
    with pytest.raises(FileNotFoundError, match="tokenizer_config.json"):
        load_tokenizer(tmp_path / "nothing")


def test_bare_hf_tokenizer_json_loads_as_hub(tmp_path: Path) -> None:
    bpe = build_tokenizer("bpe", TEXT, vocab_size=300)
    assert isinstance(bpe, BPETokenizer)
    tmp_path.joinpath("bare").mkdir()
    bpe.hf.save(str(tmp_path / "bare" / "tokenizer.json"))
    tok = load_tokenizer(tmp_path / "bare")
    assert isinstance(tok, HubTokenizer) and tok.pad_id == 0
    assert tok.decode(tok.encode(ODD)) == ODD


def test_hub_tokenizer_offline_error_is_clear() -> None:
    with pytest.raises(OSError, match=r"(?s)'not-a-real/tokenizer'.*offline \(LINMIX_OFFLINE=1\).*load_tokenizer"):
        hub_tokenizer("not-a-real/tokenizer")


def test_real_shakespeare_char_and_bpe_exact(data_dir: Path) -> None:
    train = load_lm_text("tinyshakespeare", "train", data_dir)
    valid = load_lm_text("tinyshakespeare", "valid", data_dir)[:20_000]
    char = build_tokenizer("char", train)
    assert char.vocab_size == 67 and char.decode(char.encode(valid)) == valid
    bpe = build_tokenizer("bpe", train[:200_000], vocab_size=1024)
    ids = bpe.encode(valid)
    assert bpe.decode(ids) == valid and len(ids) < len(valid) / 2
