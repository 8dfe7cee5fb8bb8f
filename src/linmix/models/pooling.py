"""Sequence pooling that ignores padding: ``[B, T, D]`` + mask -> ``[B, D]``."""
from __future__ import annotations

import torch

from linmix.config import POOLINGS
from linmix.ops.masking import zero_padded


def pool(h: torch.Tensor, padding_mask: torch.Tensor | None, kind: str) -> torch.Tensor:
    """Mean or sum over real tokens, or the first position (the CLS token the caller prepended)."""
    if kind == "cls":
        return h[:, 0]
    if padding_mask is None:
        return h.mean(1) if kind == "mean" else h.sum(1)
    total = zero_padded(h, padding_mask).sum(1)
    if kind == "sum":
        return total
    return total / padding_mask.sum(1, keepdim=True).clamp(min=1).to(h.dtype)


def check_pooling(kind: str, causal: bool) -> None:
    if kind not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {kind!r}")
    if kind == "cls" and causal:
        raise ValueError("pooling='cls' reads position 0, which a causal stack never updates; use 'mean'")
