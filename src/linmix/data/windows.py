"""LM training examples: one long id stream cut into windows of ``block_size + 1`` ids.

:class:`LMWindows` packs the stream into windows (inputs and targets shifted by one, every target
predicted once, no padding), sampled either at random offsets (nanoGPT's ``get_batch``) or window by
window in seeded epochs, sharded over ranks as :mod:`linmix.data.sharding` says. :func:`encode_corpus`
turns a corpus into that stream.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from linmix.data.sharding import ShardMode, resolve_rank, shard_indices
from linmix.data.tokenizers import Tokenizer


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
