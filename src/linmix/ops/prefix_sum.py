"""Causal prefix sum over the time axis, fast on CPU and exact in low precision.

``torch.cumsum`` over dim 1 of a ``[B, T, D]`` tensor walks T with a stride of D and runs serially; on a CPU it
is several times slower than the matmuls around it. The blockwise form here splits T into chunks of ``C``
tokens, takes the within-chunk prefix sums as one batched matmul with a ``[C, C]`` lower-triangular matrix,
and adds the running total of the preceding chunks (a cumsum over only ``T / C`` rows).

The custom autograd function saves nothing for backward: the gradient of a prefix sum is the reverse
(suffix) sum of the incoming gradient, computed by the same kernel with an upper-triangular matrix. Low
precision input (bf16/fp16) is accumulated in float32 and cast back, so sums over 16k tokens keep their digits.
"""
from __future__ import annotations

import torch

CHUNK = 64


def prefix_sum_reference(x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """Obvious float64 loop: ``y[:, t] = sum(x[:, :t+1])`` (``sum(x[:, t:])`` when ``reverse``)."""
    out = torch.empty_like(x, dtype=torch.float64)
    acc = torch.zeros_like(x[:, 0], dtype=torch.float64)
    order = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    for t in order:
        acc = acc + x[:, t].double()
        out[:, t] = acc
    return out.to(x.dtype)


def _triangle(c: int, reverse: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    ones = torch.ones(c, c, dtype=dtype, device=device)
    return torch.triu(ones) if reverse else torch.tril(ones)


def _blockwise(x: torch.Tensor, reverse: bool, chunk: int = CHUNK) -> torch.Tensor:
    """Prefix (or suffix) sum over dim 1 of ``[B, T, D]`` via chunked triangular matmuls."""
    B, T, D = x.shape
    work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    xw = x.to(work_dtype)
    if T <= chunk:
        tri = _triangle(T, reverse, work_dtype, x.device)
        return torch.matmul(tri, xw).to(x.dtype)
    n = -(-T // chunk)
    pad = n * chunk - T
    if pad:
        # Padding at the end is harmless for a prefix sum; for a suffix sum it must go at the start.
        zeros = xw.new_zeros(B, pad, D)
        xw = torch.cat([zeros, xw], 1) if reverse else torch.cat([xw, zeros], 1)
    blocks = xw.view(B, n, chunk, D)
    within = torch.matmul(_triangle(chunk, reverse, work_dtype, x.device), blocks)
    if reverse:
        totals = within[:, :, 0]
        carry = totals.flip(1).cumsum(1).flip(1) - totals
    else:
        totals = within[:, :, -1]
        carry = totals.cumsum(1) - totals
    out = (within + carry.unsqueeze(2)).view(B, n * chunk, D)
    out = out[:, pad:] if (pad and reverse) else out[:, :T]
    return out.to(x.dtype)


class _PrefixSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D401 - autograd API
        return _blockwise(x, reverse=False)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _blockwise(grad.contiguous(), reverse=True)


def prefix_sum(x: torch.Tensor) -> torch.Tensor:
    """``y[:, t] = x[:, :t+1].sum(1)`` for ``x: [B, T, D]``; O(T) memory, O(T * CHUNK) flops."""
    if x.dim() != 3:
        raise ValueError(f"prefix_sum expects [B, T, D], got shape {list(x.shape)}")
    return _PrefixSum.apply(x.contiguous())
