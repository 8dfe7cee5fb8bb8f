"""Exact causal long convolution decoded one token at a time, O(log^2 L) amortised work per token.

The tiling of Flash Inference (Oncescu et al., arXiv 2410.12982). Per channel,
``y[t] = sum_{s <= t} k[t - s] x[s]`` splits into the present and the past::

    y[t] = k[0] x[t] + f[t],        f[t] = sum_{s < t} k[t - s] x[s]

and ``f`` (the *future contributions*) is accumulated ahead of time in a buffer. After token ``t`` is
consumed (``i = t + 1`` tokens in), with ``U = i & -i`` the largest power of two dividing ``i``, the block of
inputs ``[i - U, i)`` adds its part to the outputs ``[i, i + U)`` (lags ``1 .. 2U - 1``)::

    f[i + a] += sum_{b < U} k[U + a - b] x[i - U + b]          a = 0 .. U - 1          (one *tile*)

These tiles cover every pair (input ``s``, output ``o``) with ``s < o`` exactly once: with ``p`` the highest
bit in which ``s`` and ``o`` differ, the only tile holding the pair is ``i`` = ``o`` with its bits below ``p``
cleared, ``U = 2^p``. As ``i <= o``, a contribution to ``f[o]`` is in place before step ``o`` reads it. Only the
largest power of two counts: a tile for every ``2^j`` dividing ``i`` would count pairs such as (1, 2) twice.
:func:`tiles_covering` enumerates them so the tests can check the partition by brute force.

A tile of size ``U <= DIRECT_MAX`` is a direct ``U x U`` Toeplitz product; a larger one a circular
convolution of size ``2U`` (by FFT) of the zero-padded input block with kernel lags ``[0, 2U)``, read at
outputs ``[U, 2U)``: there the index difference lies in ``[1, 2U - 1]`` for every input of the block, so
nothing wraps and the result is exact. Tiles of size ``U`` come once every ``2U`` tokens, so ``L`` tokens cost
O(L log^2 L) in all; the largest tile (every power-of-two position) is a latency spike of one FFT of size ``2i``.

:class:`OnlineConv` is the decoding state: inputs so far and the future buffer, both ``[B, D, capacity]`` in
the accumulation dtype and grown by doubling (so O(L D) memory), plus each tile size's transformed kernel,
made from a callable that returns any range of lags (a kernel defined at every lag is evaluated only as far
as decoding reaches: lags ``[0, 2U)`` when the first tile of size ``U`` comes). :func:`tile_reference` is
the defining double sum, for the tests.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch

#: tiles up to this size are direct Toeplitz products (cheaper than two FFTs at these sizes)
DIRECT_MAX = 32
#: first capacity of the input and future buffers
MIN_CAPACITY = 16

#: ``kernel(start, stop) -> [D, stop - start]``: lags ``start .. stop - 1`` of a per-channel causal kernel
KernelFn = Callable[[int, int], torch.Tensor]


def tile_size(i: int) -> int:
    """``U``: the largest power of two dividing ``i >= 1`` (the tile added once ``i`` tokens are in)."""
    return i & -i


def tiles_covering(stop: int) -> Iterator[tuple[int, int]]:
    """``(i, U)`` for every tile added while decoding ``stop`` tokens (``i = 1 .. stop``)."""
    for i in range(1, stop + 1):
        yield i, tile_size(i)


def prefill_tiles(P: int) -> list[tuple[int, int]]:
    """The tiles ``(i, U)``, ``i <= P``, whose outputs ``[i, i + U)`` reach past ``P - 1``: at most one per size.

    For ``U = 2^j`` the candidate is the largest multiple of ``U`` not above ``P`` (``i > P - U`` leaves no
    other), and it is a tile of size ``U`` only when ``i / U`` is odd.
    """
    out, U = [], 1
    while U <= P:
        i = (P // U) * U
        if (i // U) % 2 == 1:
            out.append((i, U))
        U *= 2
    return out


def tile_operator(lags: torch.Tensor, U: int) -> torch.Tensor:
    """The kernel of a size-``U`` tile from ``lags: [D, >= 2U]``: Toeplitz ``[D, U, U]`` or spectrum ``[D, U+1]``."""
    if U <= DIRECT_MAX:
        a = torch.arange(U, device=lags.device)
        return lags[:, U + a[:, None] - a[None, :]]  # [d, a, b] = k[U + a - b]
    return torch.fft.rfft(lags[:, : 2 * U], n=2 * U)


def tile_apply(block: torch.Tensor, operator: torch.Tensor, U: int) -> torch.Tensor:
    """Contributions of ``block: [B, D, U]`` (inputs ``[i - U, i)``) to outputs ``[i, i + U)``: ``[B, D, U]``."""
    if U <= DIRECT_MAX:
        return torch.einsum("bdc,dac->bda", block, operator)
    return torch.fft.irfft(torch.fft.rfft(block, n=2 * U) * operator, n=2 * U)[..., U:]


def tile_reference(block: torch.Tensor, lags: torch.Tensor) -> torch.Tensor:
    """The defining sum ``out[a] = sum_b k[U + a - b] block[b]`` written out, for ``block: [B, D, U]``."""
    U = block.shape[-1]
    out = torch.zeros_like(block)
    for a in range(U):
        for b in range(U):
            out[..., a] += lags[:, U + a - b] * block[..., b]
    return out


def _grown(buf: torch.Tensor, need: int) -> torch.Tensor:
    """``buf: [..., n]`` with at least ``need`` slots on the last axis (doubling; new slots zero)."""
    n = buf.shape[-1]
    if n >= need:
        return buf
    cap = max(MIN_CAPACITY, n)
    while cap < need:
        cap *= 2
    out = buf.new_zeros(*buf.shape[:-1], cap)
    out[..., :n] = buf
    return out


@dataclass
class OnlineConv:
    """Streaming state of ``y = causal_conv(x, k)`` per channel, see the module docstring.

    ``history`` is ``[B, D, capacity]`` (input ``s`` at slot ``s``), ``future`` the same for the outputs from
    ``offset`` on (slot ``o - offset``: outputs already produced are dropped when it grows); ``lags`` is ``[D, 2 DIRECT_MAX]`` (the first lags:
    ``k[0]`` and the direct tiles) and ``operators`` maps a tile size to its :func:`tile_operator`. Both caches
    are pure functions of the kernel, so :meth:`clone` shares the tensors; they are evaluated as decoding
    reaches them, so a state is tied to the parameters the kernel had meanwhile (make a new one after an
    optimiser step).
    """

    history: torch.Tensor
    future: torch.Tensor
    lags: torch.Tensor
    kernel: KernelFn
    pos: int = 0
    offset: int = 0
    operators: dict[int, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def empty(cls, batch_size: int, kernel: KernelFn, dtype: torch.dtype) -> OnlineConv:
        """The state before any token; ``dtype`` is the precision it accumulates in."""
        lags = kernel(0, 2 * DIRECT_MAX).to(dtype)
        zeros = lags.new_zeros(batch_size, lags.shape[0], MIN_CAPACITY)
        return cls(zeros, zeros.clone(), lags, kernel)

    @classmethod
    def after(cls, x: torch.Tensor, kernel: KernelFn, dtype: torch.dtype) -> OnlineConv:
        """The state after ``x: [B, D, P]`` has been decoded, built from its O(log P) :func:`prefill_tiles`."""
        B, D, P = x.shape
        state = cls.empty(B, kernel, dtype)
        state.history = _grown(state.history, P)
        state.history[..., :P] = x.to(dtype)
        state.pos = P
        for i, U in prefill_tiles(P):
            state._add_tile(i, U)
        return state

    def step(self, x_t: torch.Tensor) -> tuple[torch.Tensor, OnlineConv]:
        """Consume ``x_t: [B, D]``; return ``(y_t, state)``, ``y_t`` in the accumulation dtype.

        With autograd off the buffers are written in place and ``self`` is returned; with it on, ``self`` is
        left as it was and a copy is written (so earlier steps' saved tensors stay valid: O(t) per step).
        """
        state = self.clone() if torch.is_grad_enabled() else self
        t = state.pos
        state.history = _grown(state.history, t + 1)
        state.history[..., t] = x_t.to(state.history.dtype)
        y = state.lags[:, 0] * state.history[..., t] + state.future[..., t - state.offset]  # it reaches t
        state.pos = t + 1
        state._add_tile(t + 1, tile_size(t + 1))
        return y, state

    def _add_tile(self, i: int, U: int) -> None:
        """Add the tile of the inputs ``[i - U, i)`` to the outputs ``[i, i + U)`` not yet produced."""
        if i + U - self.offset > self.future.shape[-1]:  # grow, keeping only the outputs from pos on
            live = self.future[..., self.pos - self.offset:]
            self.offset = self.pos
            self.future = _grown(live, i + U - self.offset)
        contribution = tile_apply(self.history[..., i - U:i], self._operator(U, keep=i > U), U)
        lo = max(i, self.pos)  # a prefill's tiles also reach outputs before pos: never read, skipped
        self.future[..., lo - self.offset:i + U - self.offset] += contribution[..., lo - i:]

    def _operator(self, U: int, keep: bool) -> torch.Tensor:
        """The size-``U`` tile's kernel: from the kept lags, or (FFT tiles) from lags ``[0, 2U)`` evaluated
        afresh and dropped once transformed, so no lag table is kept beyond the spectra.

        A spectrum is kept from its second use on (``keep``: ``i > U``; the first tile of size ``U`` is at
        ``i = U`` and the next only at ``3U``): the largest size, used once so far, is not held, which halves
        the spectra's memory for the price of one extra evaluation per size.
        """
        op = self.operators.get(U)
        if op is None:
            lags = self.lags if U <= DIRECT_MAX else self.kernel(0, 2 * U).to(self.lags.dtype)
            op = tile_operator(lags, U)
            if keep or U <= DIRECT_MAX:
                self.operators[U] = op
        return op

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor held (buffers, kernel lags, tile operators) by name."""
        ops = {f"operator{U}": op for U, op in self.operators.items()}
        return {"history": self.history, "future": self.future, "lags": self.lags, **ops}

    def nbytes(self) -> int:
        """Bytes held by :meth:`tensors`."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def clone(self) -> OnlineConv:
        """A branch: own copies of the buffers, the kernel caches shared (see the class docstring)."""
        return replace(self, history=self.history.clone(), future=self.future.clone(),
                       operators=dict(self.operators))
