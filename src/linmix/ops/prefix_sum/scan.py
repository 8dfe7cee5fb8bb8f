"""Causal prefix sum over the time axis, fast on CPU and exact in low precision.

``torch.cumsum`` over dim 1 of a ``[B, T, D]`` tensor walks T serially with a stride of D; on a CPU it is
several times slower than the matmuls around it. :func:`scan_` is the fast form, in place: T is cut into
``n`` chunks of ``C ~ sqrt(T)/4`` rows; one reduction gives the chunk totals, a cumsum over those
(``[B, n, D]``, small) each chunk's carry, and ``C`` vectorised row additions, each over *all* chunks at once
(row ``i`` of every chunk += row ``i - 1``), finish the job. About ``C + 4`` kernel calls, no temporary of the
input's size, two reads and one write per element. On CUDA it is ``torch.cumsum`` (a native parallel scan).

:func:`prefix_sum` wraps :func:`scan_` in a custom autograd function that saves nothing for backward: the
gradient of a prefix sum is the reverse (suffix) sum of the incoming gradient, computed by the same kernel.
Low precision input (bf16/fp16) is accumulated in float32 (:func:`linmix.ops.dtypes.accumulation_dtype`) and
cast back, so sums over 16k tokens keep their digits. The reference is :mod:`linmix.ops.prefix_sum.naive`.
"""
from __future__ import annotations

import math

import torch

from linmix.ops.dtypes import accumulation_dtype

SMALL = 64  # up to this length one [T, T] triangular matmul is the cheapest scan


def _triangle(c: int, reverse: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    ones = torch.ones(c, c, dtype=dtype, device=device)
    return torch.triu(ones) if reverse else torch.tril(ones)


def scan_chunk(T: int) -> int:
    """Rows per chunk for :func:`scan_`: a power of two near ``sqrt(T) / 4`` (8 .. 128).

    Fewer, larger row additions than the ``sqrt(T)`` balance point: as fast on one or two threads (the
    pass is memory-bound) and fewer thread barriers, which is what a busy machine punishes.
    """
    c = 2 ** math.floor(math.log2(max(1.0, math.sqrt(T) / 4)) + 0.5)
    return int(min(128, max(8, c)))


def scan_(x: torch.Tensor, reverse: bool = False, chunk: int | None = None) -> torch.Tensor:
    """Prefix (suffix when ``reverse``) sum over dim 1 of a contiguous ``[B, T, D]`` tensor, *in place*.

    Returns the result: ``x`` itself on the CPU; on CUDA (and for ``T <= SMALL``) a new tensor, so always use
    the return value. ``x`` must be float32/float64 (the caller picks the accumulation precision).

    CPU algorithm (T = n chunks of C rows, plus a few leftover rows): the chunk totals come from one
    reduction and their exclusive cumsum (``[B, n, D]``, small) is each chunk's carry; row 0 of every chunk
    gets its carry, then a loop over the C row positions adds row i-1 (still in cache) to row i of *every*
    chunk at once. About ``C + 4`` kernel calls, one read for the totals plus one read and one write per
    element, no temporary of the input's size.
    """
    B, T, D = x.shape
    if x.device.type != "cpu":
        return x.flip(1).cumsum(1).flip(1) if reverse else x.cumsum(1)
    if T <= SMALL:
        return torch.matmul(_triangle(T, reverse, x.dtype, x.device), x)
    C = chunk or scan_chunk(T)
    n = T // C
    main = n * C
    lo = T - main if reverse else 0  # the chunked rows are [lo, lo + main); the rest is done row by row
    v = x[:, lo:lo + main].view(B, n, C, D)
    totals = v.sum(2)
    inclusive = totals.flip(1).cumsum(1).flip(1) if reverse else totals.cumsum(1)
    rows = v.unbind(2)  # row i of every chunk, [B, n, D] views
    if reverse:
        rows = rows[::-1]
    rows[0].add_(inclusive - totals)  # the first row takes the chunk's carry
    for prev, row in zip(rows, rows[1:]):
        row.add_(prev)
    if main < T:  # leftover rows, continuing from the total of every chunk
        run = (inclusive[:, 0] if reverse else inclusive[:, -1]).clone()
        for t in (range(T - main - 1, -1, -1) if reverse else range(main, T)):
            run.add_(x[:, t])
            x[:, t].copy_(run)
    return x


def _fast(x: torch.Tensor, reverse: bool) -> torch.Tensor:
    """Out-of-place scan in the working precision, cast back to ``x.dtype``."""
    work = accumulation_dtype(x.dtype)
    buf = x.to(work, copy=True).contiguous()
    return scan_(buf, reverse).to(x.dtype)


class _PrefixSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D401 - autograd API
        return _fast(x, reverse=False)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _fast(grad, reverse=True)


def prefix_sum(x: torch.Tensor) -> torch.Tensor:
    """``y[:, t] = x[:, :t+1].sum(1)`` for ``x: [B, T, D]``; O(T) memory, O(T D) work, nothing saved."""
    if x.dim() != 3:
        raise ValueError(f"prefix_sum expects [B, T, D], got shape {list(x.shape)}")
    return _PrefixSum.apply(x.contiguous())
