"""Linear attention as an explicit ``[T, T]`` masked kernel matrix: the reference for :mod:`.chunked`."""
from __future__ import annotations

import torch


def linear_attention_reference(phq: torch.Tensor, phk: torch.Tensor, v: torch.Tensor, eps: float,
                               causal: bool = True) -> torch.Tensor:
    """``y = (A v) / (A 1 + eps)`` with ``A = (phq phk^T) * M`` and ``M`` lower-triangular (causal) or all ones.

    ``phq, phk: [B, H, T, dh]``, ``v: [B, H, T, dv]``; O(T^2) time and memory, plain autograd.
    """
    T = phq.shape[2]
    visible = torch.ones(T, T, dtype=phq.dtype, device=phq.device)
    scores = (phq @ phk.transpose(-1, -2)) * (torch.tril(visible) if causal else visible)
    return (scores @ v) / (scores.sum(-1, keepdim=True) + eps)
