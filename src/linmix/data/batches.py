"""Padded batches of texts (classification, text + numeric regression), and re-exports of the LM side.

:class:`ClassificationBatches` / :class:`MultimodalBatches` encode their texts once, then yield padded
batches with a boolean ``padding_mask`` (True = real token, the models' convention), sharded over ranks as
:mod:`linmix.data.sharding` says. LM windows live in :mod:`linmix.data.windows` (re-exported here).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Generic, Literal, NamedTuple, TypedDict, TypeVar

import numpy as np
import torch

from linmix.data.datasets import MultimodalData, TextClassificationData
from linmix.data.sharding import ShardMode, resolve_rank, shard_indices
from linmix.data.tokenizers import Tokenizer
from linmix.data.windows import LMWindows, encode_corpus

if TYPE_CHECKING:
    from typing_extensions import Unpack

PadTo = Literal["longest", "max_len"]
B = TypeVar("B", bound=tuple)

__all__ = ["ClassificationBatch", "ClassificationBatches", "LMWindows", "MultimodalBatch", "MultimodalBatches",
           "PadTo", "ShardMode", "TextBatchOptions", "encode_corpus", "resolve_rank", "shard_indices"]


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


class TextBatchOptions(TypedDict, total=False):
    """The keyword options every text batcher takes (see :class:`ClassificationBatches` for their meaning)."""

    batch_size: int
    max_len: int
    pad_to: PadTo
    shuffle: bool
    seed: int
    rank: int | None
    world_size: int | None
    drop_last: bool
    mode: ShardMode


class _TextBatches(ABC, Generic[B]):
    """Shared machinery: encode once, truncate, shard/shuffle per epoch, pad per batch.

    A subclass checks and stores its per-example columns, then names its batch type in :meth:`_batch`.
    """

    def __init__(
        self,
        texts: Sequence[str],
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

    def iter_epoch(self, epoch: int) -> Iterator[B]:
        """The batches of ``epoch`` on this rank."""
        order = self.indices(epoch)
        stop = (len(order) // self.batch_size) * self.batch_size if self.drop_last else len(order)
        for b in range(0, stop, self.batch_size):
            idx = order[b : b + self.batch_size]
            ids, mask = self._pad(idx)
            yield self._batch(ids, mask, idx)

    def __iter__(self) -> Iterator[B]:
        return self.iter_epoch(self.epoch)

    def _pad(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.ids[i] for i in idx]
        width = self.max_len if self.pad_to == "max_len" else max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[j, : len(r)] = True
        return ids, mask

    @abstractmethod
    def _batch(self, ids: torch.Tensor, mask: torch.Tensor, idx: list[int]) -> B:
        """The batch of examples ``idx`` around their padded ``ids`` and ``mask``."""


class ClassificationBatches(_TextBatches[ClassificationBatch]):
    """Padded, shuffled, rank-sharded batches of a text-classification split.

    Texts are encoded once (truncated to their first ``max_len`` ids; an empty encoding becomes a
    single ``<unk>``/pad id marked real, so no row is all padding). Each batch is padded to its
    longest row (``pad_to="longest"``) or to ``max_len``. ``mode`` is the sharding of
    :func:`shard_indices` (``"pad"`` for training, ``"uneven"`` to evaluate every example once).
    Options (:class:`TextBatchOptions`) and their defaults: ``batch_size=32``, ``max_len=512``,
    ``pad_to="longest"``, ``shuffle=True``, ``seed=0``, ``rank`` / ``world_size`` from
    ``torch.distributed``, ``drop_last=False``, ``mode="pad"``.
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[int], tokenizer: Tokenizer,
                 **options: Unpack[TextBatchOptions]) -> None:
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        super().__init__(texts, tokenizer, **options)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)

    @classmethod
    def from_data(cls, data: TextClassificationData, tokenizer: Tokenizer,
                  **options: Unpack[TextBatchOptions]) -> ClassificationBatches:
        """Batches over a loaded :class:`TextClassificationData` split."""
        return cls(data.texts, data.labels, tokenizer, **options)

    def _batch(self, ids: torch.Tensor, mask: torch.Tensor, idx: list[int]) -> ClassificationBatch:
        return ClassificationBatch(ids, mask, self.labels[idx])


class MultimodalBatches(_TextBatches[MultimodalBatch]):
    """:class:`ClassificationBatches` for text + numeric regression: yields :class:`MultimodalBatch`."""

    def __init__(self, texts: Sequence[str], numeric: np.ndarray | torch.Tensor,
                 targets: np.ndarray | torch.Tensor | Sequence[float], tokenizer: Tokenizer,
                 **options: Unpack[TextBatchOptions]) -> None:
        num = torch.as_tensor(np.asarray(numeric), dtype=torch.float32)
        tgt = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
        if num.dim() != 2 or num.shape[0] != len(texts) or tgt.shape != (len(texts),):
            raise ValueError(f"need numeric [N, F] and targets [N] for N={len(texts)} texts, "
                             f"got {tuple(num.shape)} and {tuple(tgt.shape)}")
        super().__init__(texts, tokenizer, **options)
        self.numeric, self.targets = num, tgt

    @classmethod
    def from_data(cls, data: MultimodalData, tokenizer: Tokenizer,
                  **options: Unpack[TextBatchOptions]) -> MultimodalBatches:
        """Batches over a loaded :class:`MultimodalData` split (standardise its numerics first)."""
        return cls(data.texts, data.numeric, data.targets, tokenizer, **options)

    def _batch(self, ids: torch.Tensor, mask: torch.Tensor, idx: list[int]) -> MultimodalBatch:
        return MultimodalBatch(ids, mask, self.numeric[idx], self.targets[idx])
