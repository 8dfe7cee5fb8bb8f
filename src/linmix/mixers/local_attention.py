"""Sliding-window softmax attention: each query sees only the keys within ``window`` positions of it.

What it computes: the same heads and projections as :mod:`linmix.mixers.attention`, with query ``t``
restricted to the keys ``s`` with::

    t - window < s <= t      (causal: the current token and the window - 1 before it)
    |t - s| < window         (bidirectional: window - 1 either side)

and padded keys hidden (each query may always see itself, so no row is empty and nothing is NaN).

O(T * window) time and memory; no ``[T, T]`` object is ever built. T is padded to a multiple of the block
size ``b = min(window, T)`` and split into blocks; a query block attends to the keys of the previous block
and its own (causal), or previous, own and next (bidirectional), through one batched
:func:`torch.nn.functional.scaled_dot_product_attention` call with an exact ``[b, 2b]`` (or ``[b, 3b]``)
mask of the window. As ``b = window`` (or ``b = T`` when the sequence is shorter than the window), those
neighbouring blocks hold every visible key.

Streaming keeps a rolling cache of the last ``window`` keys and values (it grows by doubling up to the
window, so a short decode allocates no more than it needs): O(window * D) memory per sequence whatever the
position, and each step costs O(window * D). Nothing is sized by ``max_len``, so the mixer is length-free:
sequences and decoding positions past ``max_len`` are the same mixer with the same bounded cache.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from linmix.mixers.attention import Attention, check_positive_int
from linmix.mixers.registry import register


@register("local_attention")
class LocalAttention(Attention):
    """Sliding-window softmax attention: O(T * window) time and memory, rolling KV cache for step.

    See the module docstring for the exact window. Streaming state: a :class:`~linmix.mixers.attention.KVState`
    whose ``k`` and ``v`` are rolling caches ``[B, H, <= window, dh]``: 2 * D floats per cached token for at
    most ``window`` tokens, constant in the position (also past ``max_len``: the mixer is length-free).
    """

    test_grid = ({}, {"window": 5, "n_heads": 2}, {"window": 5, "rotary": True})

    def __init__(self, d_model: int, max_len: int, causal: bool, window: int = 128, n_heads: int = 4,
                 rotary: bool = False) -> None:
        super().__init__(d_model, max_len, causal, n_heads=n_heads, rotary=rotary)
        self.window = check_positive_int("window", window)

    @property
    def cache_limit(self) -> int:
        """The rolling cache holds the last ``window`` positions at most (position ``p`` at ``p % window``)."""
        return self.window

    def allowed_pairs(self, T: int, device: torch.device) -> torch.Tensor:
        """``[T, T]`` bool, True where key ``s`` lies in the window of query ``t`` (reference form)."""
        pos = torch.arange(T, device=device)
        return self._in_window(pos[:, None] - pos[None, :])

    def _in_window(self, offset: torch.Tensor) -> torch.Tensor:
        """True where a key ``offset = t - s`` positions before the query is visible."""
        if self.causal:
            return (offset >= 0) & (offset < self.window)
        return offset.abs() < self.window

    # ------------------------------------------------------------------------------------ pieces
    def _neighbours(self, blocks: torch.Tensor, dim: int) -> torch.Tensor:
        """Blocks indexed by dim 1, tokens by ``dim``: each block's previous, own (and next) tokens.

        The missing neighbour of the first (and last) block is zero-filled (``False`` for a mask), so
        ``blocks.shape[dim]`` grows from ``b`` to ``2b`` (causal) or ``3b`` (bidirectional).
        """
        empty = torch.zeros_like(blocks[:, :1])
        parts = [torch.cat([empty, blocks[:, :-1]], dim=1), blocks]
        if not self.causal:
            parts.append(torch.cat([blocks[:, 1:], empty], dim=1))
        return torch.cat(parts, dim=dim)

    def _block_mask(self, real: torch.Tensor, b: int) -> torch.Tensor:
        """``real: [B, n*b] -> [B, n, 1, b, k*b]`` bool: window and key padding; each query sees itself."""
        keys = self._neighbours(real.view(real.shape[0], -1, b), dim=2)
        i = torch.arange(b, device=real.device)
        j = torch.arange(keys.shape[-1], device=real.device)
        offset = b + i[:, None] - j[None, :]
        return (keys[:, :, None, None, :] & self._in_window(offset)) | (offset == 0)

    @staticmethod
    def _blocked(t: torch.Tensor, b: int) -> torch.Tensor:
        """``[B, H, T, dh] -> [B, n, H, b, dh]`` with T zero-padded to ``n * b``."""
        B, H, T, dh = t.shape
        return F.pad(t, (0, 0, 0, -T % b)).view(B, H, -1, b, dh).transpose(1, 2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Blocked window attention over ``[B, H, T, dh]`` heads; returns ``[B, H, T, dh]``."""
        B, H, T, dh = q.shape
        b = min(self.window, T)
        real = torch.ones(B, T, dtype=torch.bool, device=q.device) if padding_mask is None else padding_mask
        mask = self._block_mask(F.pad(real, (0, -T % b), value=False), b)
        qb = self._blocked(q, b)
        kb, vb = (self._neighbours(self._blocked(t, b), dim=3) for t in (k, v))
        y = F.scaled_dot_product_attention(qb.flatten(0, 1), kb.flatten(0, 1), vb.flatten(0, 1),
                                           attn_mask=mask.flatten(0, 1))
        return y.view(B, -1, H, b, dh).transpose(1, 2).reshape(B, H, -1, dh)[:, :, :T]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, window={self.window}"

