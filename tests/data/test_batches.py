"""Batching: LM window shapes and shift, rank disjointness, padding masks, seeded reproducible shuffles."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from linmix.data import (
    ClassificationBatches,
    LMWindows,
    MultimodalBatches,
    build_tokenizer,
    encode_corpus,
    load_classification,
    load_lm_text,
    load_regression,
    shard_indices,
)


def _windows_as_sets(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> set[int]:
    return {int(x[0]) for xb, _ in batches for x in xb}


# ---------------------------------------------------------------- shard_indices

@pytest.mark.parametrize("mode", ["pad", "drop", "uneven"])
def test_shards_disjoint_and_cover(mode: str) -> None:
    n, ws = 23, 4
    shards = [shard_indices(n, epoch=1, seed=5, rank=r, world_size=ws, mode=mode) for r in range(ws)]
    flat = [i for s in shards for i in s]
    if mode == "pad":
        assert {len(s) for s in shards} == {6} and set(flat) == set(range(n))
    elif mode == "drop":
        assert {len(s) for s in shards} == {5} and len(set(flat)) == 20
    else:
        assert sorted(flat) == list(range(n))
    if mode != "pad":
        assert len(flat) == len(set(flat))


def test_shard_order_seeded() -> None:
    a = shard_indices(50, epoch=2, seed=7)
    assert a == shard_indices(50, epoch=2, seed=7)
    assert a != shard_indices(50, epoch=3, seed=7)
    assert shard_indices(5, shuffle=False) == [0, 1, 2, 3, 4]
    assert shard_indices(2, rank=2, world_size=4, shuffle=False) == [0]


# ---------------------------------------------------------------- LMWindows

def test_lm_windows_shapes_and_shift() -> None:
    ids = torch.arange(101)
    lm = LMWindows(ids, block_size=10)
    assert len(lm) == 10
    x, y = lm.window(3)
    assert x.tolist() == list(range(30, 40)) and y.tolist() == list(range(31, 41))
    xb, yb = lm.get_batch(8)
    assert xb.shape == yb.shape == (8, 10) and xb.dtype == torch.long
    assert torch.equal(yb, xb + 1)
    assert int(xb.max()) <= 99


def test_lm_epoch_covers_every_target_once() -> None:
    lm = LMWindows(torch.arange(101), block_size=10)
    batches = list(lm.batches(4, shuffle=False))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    targets = torch.cat([y.flatten() for _, y in batches]).sort().values
    assert targets.tolist() == list(range(1, 101))
    assert len(list(lm.batches(4, drop_last=True))) == 2 == lm.num_batches(4, drop_last=True)


def test_lm_get_batch_seeded() -> None:
    ids = torch.randint(0, 50, (5_000,), generator=torch.Generator().manual_seed(0))
    a, b = LMWindows(ids, 16, seed=1), LMWindows(ids, 16, seed=1)
    assert all(torch.equal(a.get_batch(4)[0], b.get_batch(4)[0]) for _ in range(3))
    assert not torch.equal(LMWindows(ids, 16, seed=2).get_batch(4)[0], LMWindows(ids, 16, seed=1).get_batch(4)[0])


def test_lm_ranks_get_disjoint_windows() -> None:
    ids = torch.arange(1_001)
    ranks = [LMWindows(ids, 10, rank=r, world_size=3, seed=4) for r in range(3)]
    epoch_sets = [_windows_as_sets(list(lm.batches(7, epoch=2))) for lm in ranks]
    assert all(len(s) == 33 for s in epoch_sets)
    assert not (epoch_sets[0] & epoch_sets[1] or epoch_sets[0] & epoch_sets[2] or epoch_sets[1] & epoch_sets[2])
    for r, lm in enumerate(ranks):
        x, y = lm.get_batch(64)
        assert int(x.min()) >= r * 333 and int(y.max()) < (r + 1) * 333


def test_lm_rejects_short_or_bad_input() -> None:
    with pytest.raises(ValueError, match="too few"):
        LMWindows(torch.arange(10), block_size=10)
    with pytest.raises(ValueError, match="1-D integer"):
        LMWindows(torch.zeros(100), block_size=4)


def test_encode_corpus_exact() -> None:
    text = "".join(f"line {i}: some text here\n" for i in range(300))
    tok = build_tokenizer("char", text)
    ids = encode_corpus(tok, text, chunk_chars=500)
    assert ids.dtype == torch.int64 and tok.decode(ids.tolist()) == text


# ---------------------------------------------------------------- classification / multimodal

TEXTS = ["a b c d e f", "a", "b c", "", "c c c c c c c c c c c c", "d e"]
LABELS = [0, 1, 2, 3, 0, 1]


@pytest.fixture
def word_tok():  # type: ignore[no-untyped-def]
    return build_tokenizer("word", TEXTS, vocab_size=20)


def test_padding_mask_matches_lengths(word_tok) -> None:  # type: ignore[no-untyped-def]
    cb = ClassificationBatches(TEXTS, LABELS, word_tok, batch_size=3, max_len=8, shuffle=False)
    assert cb.num_empty == 1 and cb.num_truncated == 1
    batches = list(cb)
    ids, mask, labels = batches[0]
    assert ids.shape == mask.shape == (3, 6) and mask.dtype == torch.bool and ids.dtype == torch.long
    assert mask.sum(1).tolist() == [6, 1, 2]
    assert (ids[~mask] == word_tok.pad_id).all() and (ids[mask] != word_tok.pad_id).all()
    assert labels.tolist() == [0, 1, 2]
    ids, mask, _ = batches[1]
    assert ids.shape == (3, 8) and mask.sum(1).tolist() == [1, 8, 2]
    assert ids[0, 0] == word_tok.unk_id


def test_pad_to_max_len(word_tok) -> None:  # type: ignore[no-untyped-def]
    cb = ClassificationBatches(TEXTS, LABELS, word_tok, batch_size=2, max_len=10, pad_to="max_len", shuffle=False)
    assert all(b.ids.shape[1] == 10 for b in cb)


def test_seeded_epochs_reproducible(word_tok) -> None:  # type: ignore[no-untyped-def]
    def labels_of(epoch: int, seed: int) -> list[int]:
        cb = ClassificationBatches(TEXTS * 5, LABELS * 5, word_tok, batch_size=4, seed=seed)
        cb.set_epoch(epoch)
        return [int(v) for b in cb for v in b.labels]

    assert labels_of(1, 0) == labels_of(1, 0)
    assert labels_of(1, 0) != labels_of(2, 0)
    assert sorted(labels_of(1, 0)) == sorted(LABELS * 5)


def test_classification_rank_sharding(word_tok) -> None:  # type: ignore[no-untyped-def]
    n = 30
    texts = [f"text {i}" for i in range(n)]
    seen = []
    for r in range(4):
        cb = ClassificationBatches(texts, list(range(n)), word_tok, batch_size=5, rank=r, world_size=4, mode="uneven")
        seen.append([int(v) for b in cb.iter_epoch(3) for v in b.labels])
    assert sorted(i for s in seen for i in s) == list(range(n))
    padded = [ClassificationBatches(texts, list(range(n)), word_tok, batch_size=5, rank=r, world_size=4)
              for r in range(4)]
    assert {sum(b.labels.numel() for b in cb) for cb in padded} == {8} and {len(cb) for cb in padded} == {2}


def test_multimodal_batches(word_tok) -> None:  # type: ignore[no-untyped-def]
    numeric = np.arange(12, dtype=np.float64).reshape(6, 2)
    targets = np.array([1, 2, 3, 4, 5, 6])
    mb = MultimodalBatches(TEXTS, numeric, targets, word_tok, batch_size=4, shuffle=True, seed=1)
    got = list(mb)
    ids, mask, num, tgt = got[0]
    assert num.dtype == tgt.dtype == torch.float32 and num.shape == (4, 2) and tgt.shape == (4,)
    for b in got:
        assert torch.equal(b.numeric[:, 0] / 2 + 1, b.targets)
    with pytest.raises(ValueError, match="numeric"):
        MultimodalBatches(TEXTS, numeric[:3], targets, word_tok)


def test_from_data_on_fake_root(fake_root: Path) -> None:
    data = load_classification("ag_news", "train", fake_root)
    tok = build_tokenizer("word", data.texts)
    cb = ClassificationBatches.from_data(data, tok, batch_size=8)
    assert sum(b.labels.numel() for b in cb) == 20
    reg = load_regression(split="train", data_dir=fake_root)
    mean, std = reg.numeric_stats()
    mb = MultimodalBatches.from_data(reg.standardized(mean, std), tok, batch_size=2)
    assert [b.numeric.shape[1] for b in mb] == [3, 3]


def test_real_shakespeare_windows(data_dir: Path) -> None:
    text = load_lm_text("tinyshakespeare", "valid", data_dir)
    tok = build_tokenizer("char", load_lm_text("tinyshakespeare", "train", data_dir))
    ids = encode_corpus(tok, text)
    assert len(ids) == 111_540
    lm = LMWindows(ids, block_size=256, seed=0)
    x, y = lm.get_batch(12)
    assert x.shape == (12, 256) and torch.equal(x[:, 1:], y[:, :-1])
    assert len(lm) == (111_540 - 1) // 256


@pytest.mark.parametrize("module, names", [
    ("linmix.data.batches", ["ClassificationBatch", "ClassificationBatches", "LMWindows", "MultimodalBatch",
                             "MultimodalBatches", "encode_corpus", "resolve_rank", "shard_indices"]),
    ("linmix.data.tokenizers", ["CharTokenizer", "Tokenizer", "WordTokenizer", "build_tokenizer", "load_tokenizer",
                                "CONFIG_FILE"]),
    ("linmix.data.bpe", ["BPETokenizer", "HubTokenizer", "hub_tokenizer", "HF_FILE", "DEFAULT_BPE_VOCAB"]),
    ("linmix.data", ["BPETokenizer", "CharTokenizer", "HubTokenizer", "WordTokenizer", "build_tokenizer",
                     "hub_tokenizer", "load_tokenizer", "LMWindows", "ClassificationBatches", "MultimodalBatches"]),
])
def test_names_stay_importable_from_their_old_modules(module: str, names: list[str]) -> None:
    import importlib

    import linmix.data

    mod = importlib.import_module(module)
    for name in names:
        assert hasattr(mod, name), f"{module}.{name} is gone"
        if name in linmix.data.__all__:
            assert getattr(mod, name) is getattr(linmix.data, name), name
