"""Turning token ids into training batches: LM windows and padded classification / regression batches.

* :class:`LMWindows` packs one long id stream into windows of ``block_size + 1`` ids (inputs and
  targets shifted by one, every target predicted once, no padding), sampled either at random
  offsets (nanoGPT's ``get_batch``) or window by window in seeded epochs.
* :class:`ClassificationBatches` / :class:`MultimodalBatches` encode their texts once, then yield
  padded batches with a boolean ``padding_mask`` (True = real token, the models' convention).

Distributed training: every batcher takes ``rank`` / ``world_size`` (default: from
``torch.distributed`` when initialised, else 0 / 1). Epoch orders follow ``DistributedSampler``:
all ranks draw the same permutation from ``seed + epoch`` and rank ``r`` takes positions
``r, r + world_size, ...``, so ranks see disjoint examples.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch

from linmix.data.datasets import MultimodalData, TextClassificationData
from linmix.data.tokenizers import Tokenizer

ShardMode = Literal["pad", "drop", "uneven"]
PadTo = Literal["longest", "max_len"]


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the given values, else ``torch.distributed``'s, else ``(0, 1)``."""
    dist = torch.distributed
    active = dist.is_available() and dist.is_initialized()
    ws = world_size if world_size is not None else (dist.get_world_size() if active else 1)
    r = rank if rank is not None else (dist.get_rank() if active else 0)
    if ws < 1 or not 0 <= r < ws:
        raise ValueError(f"need 0 <= rank < world_size, got rank={r}, world_size={ws}")
    return r, ws


def shard_indices(
    n: int,
    *,
    epoch: int = 0,
    seed: int = 0,
    shuffle: bool = True,
    rank: int = 0,
    world_size: int = 1,
    mode: ShardMode = "pad",
) -> list[int]:
    """This rank's example indices for one epoch.

    The global order is ``torch.randperm(n)`` from a generator seeded with ``seed + epoch`` (the
    same on every rank), or ``0..n-1`` without shuffling; rank ``r`` takes every
    ``world_size``-th position from ``r``. ``mode`` settles a length not divisible by
    ``world_size``: ``"pad"`` repeats the first indices so every rank gets ``ceil(n / world_size)``
    (``DistributedSampler``'s default), ``"drop"`` drops the tail so every rank gets
    ``n // world_size`` (strictly disjoint), ``"uneven"`` keeps every index exactly once (ranks may
    differ by one; for evaluation).
    """
    if shuffle:
        g = torch.Generator().manual_seed(seed + epoch)
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    if mode == "pad" and n > 0:
        total = math.ceil(n / world_size) * world_size
        order = (order * math.ceil(total / n))[:total]
    elif mode == "drop":
        order = order[: (n // world_size) * world_size]
    elif mode not in ("pad", "uneven"):
        raise ValueError(f"unknown shard mode {mode!r}; use 'pad', 'drop' or 'uneven'")
    return order[rank::world_size]


def encode_corpus(tokenizer: Tokenizer, text: str, chunk_chars: int = 1 << 16) -> torch.Tensor:
    """Encode a long text into a 1-D ``int64`` tensor, in line-aligned chunks of ~``chunk_chars``.

    Chunking lets Hugging Face tokenizers work in parallel; chunks end at line breaks, so for the
    char and byte-level BPE tokenizers decoding the result still gives back ``text`` exactly.
    """
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        current.append(line)
        size += len(line)
        if size >= chunk_chars:
            chunks.append("".join(current))
            current, size = [], 0
    if current:
        chunks.append("".join(current))
    encoded = tokenizer.encode_batch(chunks)
    total = sum(len(e) for e in encoded)
    flat = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int64, count=total)
    return torch.from_numpy(flat)


class LMWindows:
    """Fixed-length LM training examples cut from one token stream.

    Window ``i`` is ``ids[i * block_size : i * block_size + block_size + 1]``: its first
    ``block_size`` ids are the input ``x`` and its last ``block_size`` the target ``y``
    (``y[t] == x[t + 1]``). Consecutive windows share one id, so every token after the first is a
    target exactly once; the final partial block (fewer than ``block_size`` targets) is unused.

    Two ways to draw batches:

    * :meth:`get_batch` — nanoGPT style: ``batch_size`` random offsets (any position, not only
      window starts) from this object's seeded ``generator``. With ``world_size > 1`` rank ``r``
      samples only inside its own contiguous ``1 / world_size`` slice of the stream, so ranks
      never share a window.
    * :meth:`batches` — one epoch over the aligned windows, in a seeded per-epoch order, strided
      over ranks (``"drop"`` sharding by default: equal and disjoint window sets per rank).
    """

    def __init__(
        self,
        ids: torch.Tensor | Sequence[int] | np.ndarray,
        block_size: int,
        *,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        data = torch.as_tensor(ids)
        if data.dim() != 1 or data.is_floating_point() or data.is_complex():
            raise ValueError(f"ids must be a 1-D integer tensor, got dtype {data.dtype} shape {tuple(data.shape)}")
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.rank, self.world_size = resolve_rank(rank, world_size)
        shard = len(data) // self.world_size
        if shard < block_size + 1:
            raise ValueError(
                f"{len(data)} tokens are too few for block_size={block_size} on {self.world_size} rank(s): "
                f"each rank needs at least block_size + 1 = {block_size + 1}"
            )
        self.ids = data.long()
        self.block_size = block_size
        self.seed = seed
        self.num_windows = (len(data) - 1) // block_size
        self._shard = (self.rank * shard, (self.rank + 1) * shard)
        self.generator = torch.Generator().manual_seed(seed + self.rank)
        self._arange = torch.arange(block_size + 1)

    def __len__(self) -> int:
        return self.num_windows

    @property
    def num_tokens(self) -> int:
        """Length of the token stream."""
        return len(self.ids)

    def _gather(self, starts: torch.Tensor, device: torch.device | str | None) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = self.ids[starts[:, None] + self._arange]
        x, y = chunk[:, :-1], chunk[:, 1:]
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return x, y

    def window(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned window ``i`` as ``(x, y)``, each ``[block_size]``."""
        if not 0 <= i < self.num_windows:
            raise IndexError(f"window {i} out of range 0..{self.num_windows - 1}")
        x, y = self._gather(torch.tensor([i * self.block_size]), None)
        return x[0], y[0]

    def get_batch(self, batch_size: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` windows at random offsets in this rank's slice: ``x, y`` of shape ``[B, block_size]``."""
        lo, hi = self._shard
        starts = lo + torch.randint(hi - lo - self.block_size, (batch_size,), generator=self.generator)
        return self._gather(starts, device)

    def rank_windows(self, epoch: int = 0, shuffle: bool = True, mode: ShardMode = "drop") -> list[int]:
        """The aligned window indices this rank visits in ``epoch`` (see :func:`shard_indices`)."""
        return shard_indices(self.num_windows, epoch=epoch, seed=self.seed, shuffle=shuffle,
                             rank=self.rank, world_size=self.world_size, mode=mode)

    def num_batches(self, batch_size: int, drop_last: bool = False, mode: ShardMode = "drop") -> int:
        """How many batches :meth:`batches` yields on this rank with these options."""
        n = len(self.rank_windows(0, shuffle=False, mode=mode))
        return n // batch_size if drop_last else math.ceil(n / batch_size)

    def batches(
        self,
        batch_size: int,
        *,
        epoch: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        mode: ShardMode = "drop",
        device: torch.device | str | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of aligned windows as ``(x, y)`` batches; ``shuffle=False`` for evaluation."""
        order = torch.tensor(self.rank_windows(epoch, shuffle, mode), dtype=torch.long)
        stop = (len(order) // batch_size) * batch_size if drop_last else len(order)
        for b in range(0, stop, batch_size):
            yield self._gather(order[b : b + batch_size] * self.block_size, device)


class ClassificationBatch(NamedTuple):
    """``ids [B, T]`` long, ``padding_mask [B, T]`` bool (True = real token), ``labels [B]`` long."""

    ids: torch.Tensor
    padding_mask: torch.Tensor
    labels: torch.Tensor


class MultimodalBatch(NamedTuple):
    """``ids [B, T]``, ``padding_mask [B, T]`` (True = real), ``numeric [B, F]`` float32, ``targets [B]`` float32."""

    ids: torch.Tensor
    padding_mask: torch.Tensor
    numeric: torch.Tensor
    targets: torch.Tensor


class _TextBatches:
    """Shared machinery: encode once, truncate, shard/shuffle per epoch, pad per batch."""

    def __init__(
        self,
        texts: Sequence[str],
        tokenizer: Tokenizer,
        *,
        batch_size: int,
        max_len: int,
        pad_to: PadTo,
        shuffle: bool,
        seed: int,
        rank: int | None,
        world_size: int | None,
        drop_last: bool,
        mode: ShardMode,
    ) -> None:
        if batch_size < 1 or max_len < 1:
            raise ValueError(f"batch_size and max_len must be positive, got {batch_size}, {max_len}")
        if pad_to not in ("longest", "max_len"):
            raise ValueError(f"pad_to must be 'longest' or 'max_len', got {pad_to!r}")
        self.batch_size, self.max_len, self.pad_to = batch_size, max_len, pad_to
        self.shuffle, self.seed, self.drop_last, self.mode = shuffle, seed, drop_last, mode
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.pad_id = tokenizer.pad_id
        filler = tokenizer.unk_id if tokenizer.unk_id is not None else tokenizer.pad_id
        encoded = tokenizer.encode_batch(list(texts))
        self.ids: list[list[int]] = [e[:max_len] if e else [filler] for e in encoded]
        self.num_empty = sum(1 for e in encoded if not e)
        self.num_truncated = sum(1 for e in encoded if len(e) > max_len)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(shard_indices(len(self.ids), shuffle=False, rank=self.rank,
                              world_size=self.world_size, mode=self.mode))
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_examples(self) -> int:
        """Number of examples in the whole dataset (all ranks)."""
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order ``iter(self)`` follows (as ``DistributedSampler.set_epoch``)."""
        self.epoch = epoch

    def indices(self, epoch: int) -> list[int]:
        """This rank's example indices for ``epoch``, in visiting order."""
        return shard_indices(len(self.ids), epoch=epoch, seed=self.seed, shuffle=self.shuffle,
                             rank=self.rank, world_size=self.world_size, mode=self.mode)

    def _pad(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.ids[i] for i in idx]
        width = self.max_len if self.pad_to == "max_len" else max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[j, : len(r)] = True
        return ids, mask

    def _batch_indices(self, epoch: int) -> Iterator[list[int]]:
        order = self.indices(epoch)
        stop = (len(order) // self.batch_size) * self.batch_size if self.drop_last else len(order)
        for b in range(0, stop, self.batch_size):
            yield order[b : b + self.batch_size]


class ClassificationBatches(_TextBatches):
    """Padded, shuffled, rank-sharded batches of a text-classification split.

    Texts are encoded once (truncated to their first ``max_len`` ids; an empty encoding becomes a
    single ``<unk>``/pad id marked real, so no row is all padding). Each batch is padded to its
    longest row (``pad_to="longest"``) or to ``max_len``. ``mode`` is the sharding of
    :func:`shard_indices` (``"pad"`` for training, ``"uneven"`` to evaluate every example once).
    """

    def __init__(
        self,
        texts: Sequence[str],
        labels: Sequence[int],
        tokenizer: Tokenizer,
        *,
        batch_size: int = 32,
        max_len: int = 512,
        pad_to: PadTo = "longest",
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        mode: ShardMode = "pad",
    ) -> None:
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        super().__init__(texts, tokenizer, batch_size=batch_size, max_len=max_len, pad_to=pad_to,
                         shuffle=shuffle, seed=seed, rank=rank, world_size=world_size,
                         drop_last=drop_last, mode=mode)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)

    @classmethod
    def from_data(cls, data: TextClassificationData, tokenizer: Tokenizer, **kwargs: object) -> ClassificationBatches:
        """Batches over a loaded :class:`TextClassificationData` split."""
        return cls(data.texts, data.labels, tokenizer, **kwargs)  # type: ignore[arg-type]

    def iter_epoch(self, epoch: int) -> Iterator[ClassificationBatch]:
        """The batches of ``epoch`` on this rank."""
        for idx in self._batch_indices(epoch):
            ids, mask = self._pad(idx)
            yield ClassificationBatch(ids, mask, self.labels[idx])

    def __iter__(self) -> Iterator[ClassificationBatch]:
        return self.iter_epoch(self.epoch)


class MultimodalBatches(_TextBatches):
    """:class:`ClassificationBatches` for text + numeric regression: yields :class:`MultimodalBatch`."""

    def __init__(
        self,
        texts: Sequence[str],
        numeric: np.ndarray | torch.Tensor,
        targets: np.ndarray | torch.Tensor | Sequence[float],
        tokenizer: Tokenizer,
        *,
        batch_size: int = 32,
        max_len: int = 512,
        pad_to: PadTo = "longest",
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        mode: ShardMode = "pad",
    ) -> None:
        num = torch.as_tensor(np.asarray(numeric), dtype=torch.float32)
        tgt = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
        if num.dim() != 2 or num.shape[0] != len(texts) or tgt.shape != (len(texts),):
            raise ValueError(f"need numeric [N, F] and targets [N] for N={len(texts)} texts, "
                             f"got {tuple(num.shape)} and {tuple(tgt.shape)}")
        super().__init__(texts, tokenizer, batch_size=batch_size, max_len=max_len, pad_to=pad_to,
                         shuffle=shuffle, seed=seed, rank=rank, world_size=world_size,
                         drop_last=drop_last, mode=mode)
        self.numeric, self.targets = num, tgt

    @classmethod
    def from_data(cls, data: MultimodalData, tokenizer: Tokenizer, **kwargs: object) -> MultimodalBatches:
        """Batches over a loaded :class:`MultimodalData` split (standardise its numerics first)."""
        return cls(data.texts, data.numeric, data.targets, tokenizer, **kwargs)  # type: ignore[arg-type]

    def iter_epoch(self, epoch: int) -> Iterator[MultimodalBatch]:
        """The batches of ``epoch`` on this rank."""
        for idx in self._batch_indices(epoch):
            ids, mask = self._pad(idx)
            yield MultimodalBatch(ids, mask, self.numeric[idx], self.targets[idx])

    def __iter__(self) -> Iterator[MultimodalBatch]:
        return self.iter_epoch(self.epoch)
