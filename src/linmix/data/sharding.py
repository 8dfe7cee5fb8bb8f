"""Which examples each rank sees: the ``DistributedSampler`` conventions shared by every batcher.

Every batcher takes ``rank`` / ``world_size`` (default: from ``torch.distributed`` when initialised, else
0 / 1; see :func:`resolve_rank`). Epoch orders follow ``DistributedSampler``: all ranks draw the same
permutation from ``seed + epoch`` and rank ``r`` takes positions ``r, r + world_size, ...``, so ranks see
disjoint examples (:func:`shard_indices`).
"""
from __future__ import annotations

import math
from typing import Literal

import torch

ShardMode = Literal["pad", "drop", "uneven"]


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
