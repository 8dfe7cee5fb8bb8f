"""The prefix sum as the obvious float64 loop over time: the reference :mod:`.scan` is tested against."""
from __future__ import annotations

import torch


def prefix_sum_reference(x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """``y[:, t] = sum(x[:, :t+1])`` (``sum(x[:, t:])`` when ``reverse``) for ``x: [B, T, ...]``, in x's dtype.

    One float64 accumulator walks T step by step, so the only rounding is the final cast.
    """
    out = torch.empty_like(x, dtype=torch.float64)
    acc = torch.zeros_like(x[:, 0], dtype=torch.float64)
    order = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    for t in order:
        acc = acc + x[:, t].double()
        out[:, t] = acc
    return out.to(x.dtype)
