"""Multi-head softmax attention: the quadratic baseline every other mixer is measured against.

What it computes, for ``x: [B, T, D]`` with ``H`` heads of size ``dh = D / H``::

    q, k, v = split_heads(W_qkv x + b_qkv)                     # one fused Linear(D, 3D)
    a[t, s] = softmax_s(q[t] . k[s] / sqrt(dh))  over visible s  # s <= t when causal, every s otherwise
    y[t]    = W_o concat_heads(sum_s a[t, s] v[s]) + b_o

The parallel form is :func:`torch.nn.functional.scaled_dot_product_attention`. Without a padding mask it
runs with ``is_causal=True`` (or no mask at all), so the fused kernels (flash on CPU and CUDA) apply and
no ``[T, T]`` mask is built. With a padding mask a boolean ``[B, 1, T, T]`` mask hides padded keys (and
the future, when causal); every query may always see itself, so no row is empty and nothing is NaN (the
outputs at padded positions are zeroed by :class:`~linmix.mixers.base.Mixer` anyway).

With ``rotary=True`` the queries and keys are rotated by their absolute positions
(:mod:`linmix.ops.rotary`) before the scores, so the scores depend on offsets only and the mixer is defined
at every length; without it the mixer has no notion of order of its own and relies on the model's positions.

Streaming keeps a KV cache that grows with the decode: it starts with ``min(max_len, 64)`` slots and
doubles whenever the position reaches its capacity (amortised O(D) copying per token): 2 * D floats per
cached token, O(T) memory per sequence, and step ``t`` costs O(t D) (it attends over the whole prefix).

Nothing in the mixer is sized by ``max_len`` (no per-position table; rotary scores are relative, and
without rotary order comes from the model), so it is length-free: sequences and decoding positions past
``max_len`` are the same mixer, the cache simply keeps growing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from linmix.mixers.base import Mixer, MixerState
from linmix.mixers.registry import register
from linmix.ops.rotary import apply_rotary


def check_heads(d_model: int, n_heads: int) -> int:
    """Return the head size ``d_model // n_heads``; ``ValueError`` when the heads do not tile ``d_model``."""
    if isinstance(n_heads, bool) or not isinstance(n_heads, int) or n_heads <= 0:
        raise ValueError(f"n_heads must be a positive integer, got {n_heads!r}")
    if d_model % n_heads:
        divisors = [h for h in range(1, min(d_model, 64) + 1) if d_model % h == 0]
        raise ValueError(
            f"d_model={d_model} is not divisible by n_heads={n_heads}; pick n_heads from {divisors}"
        )
    return d_model // n_heads


def check_positive_int(name: str, value: int) -> int:
    """Return ``value`` when it is a positive integer, else raise a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


#: slots a fresh KV cache holds (at most ``max_len``) before it first doubles
INITIAL_CACHE_LEN = 64


def grown(cache: torch.Tensor, capacity: int) -> torch.Tensor:
    """``cache: [B, H, L, dh]`` zero-extended to ``capacity`` slots (a new tensor; autograd flows through)."""
    return F.pad(cache, (0, 0, 0, capacity - cache.shape[2]))


def write_slot(cache: torch.Tensor, slot: int, value: torch.Tensor) -> torch.Tensor:
    """Store ``value: [B, H, 1, dh]`` at position ``slot`` of ``cache: [B, H, L, dh]``.

    Under ``torch.no_grad`` (decoding) the cache is updated in place, so a step costs O(D), not O(L D);
    when autograd is recording, an out-of-place copy keeps earlier steps' saved tensors valid.
    """
    index = torch.tensor([slot], device=cache.device)
    value = value.to(cache.dtype)
    if torch.is_grad_enabled() and (value.requires_grad or cache.requires_grad):
        return cache.index_copy(2, index, value)
    return cache.index_copy_(2, index, value)


@dataclass
class KVState(MixerState):
    """Key and value caches ``[B, H, capacity, dh]``; position ``p`` lives at slot ``p`` (full attention,
    the capacity grows) or ``p % window`` (a rolling window cache)."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None


@register("attention")
class Attention(Mixer):
    """Multi-head softmax attention (fused qkv, scaled_dot_product_attention, KV cache for step).

    See the module docstring for the exact formula. Streaming state: :class:`KVState`, ``k`` and ``v``
    caches of shape ``[B, H, capacity, dh]``, the capacity doubling as decoding reaches it: 2 * D floats per
    cached token, O(T) memory. :meth:`step` writes the cache in place when autograd is off, so the state
    passed in is consumed. Length-free: past ``max_len`` the cache keeps growing.
    """

    test_grid = ({}, {"n_heads": 1}, {"rotary": True})

    def __init__(self, d_model: int, max_len: int, causal: bool, n_heads: int = 4, rotary: bool = False) -> None:
        super().__init__(d_model, max_len, causal)
        self.head_dim = check_heads(self.d_model, n_heads)
        if not isinstance(rotary, bool):
            raise ValueError(f"rotary must be true or false, got {rotary!r}")
        if rotary and self.head_dim % 2:
            raise ValueError(f"rotary positions need an even head size; d_model={self.d_model} / "
                             f"n_heads={n_heads} = {self.head_dim}")
        self.n_heads, self.rotary = n_heads, rotary
        self.qkv = nn.Linear(self.d_model, 3 * self.d_model)
        self.out = nn.Linear(self.d_model, self.d_model)

    @property
    def length_free(self) -> bool:
        """No per-position table and a cache that grows: the same mixer at every length."""
        return True

    @property
    def cache_limit(self) -> int | None:
        """Most positions the streaming cache ever holds (None: every position, the cache grows)."""
        return None

    def cache_capacity(self, needed: int) -> int:
        """Slots for ``needed`` positions: ``min(max_len, 64)`` doubled until they fit, capped at the limit."""
        capacity = min(self.max_len, INITIAL_CACHE_LEN)
        while capacity < needed:
            capacity *= 2
        return capacity if self.cache_limit is None else min(capacity, self.cache_limit)

    def cache_slot(self, pos: int | torch.Tensor) -> int | torch.Tensor:
        """The cache slot of position ``pos``: ``pos`` itself, or ``pos % limit`` for a rolling cache."""
        return pos if self.cache_limit is None else pos % self.cache_limit

    # ------------------------------------------------------------------------------------ pieces
    def heads(self, x: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project ``x: [B, T, D]`` (tokens at positions ``start ..``) to ``q, k, v``, each ``[B, H, T, dh]``;
        with ``rotary`` the queries and keys come back rotated by their positions."""
        B, T, _ = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.rotary:
            q, k = apply_rotary(q, start), apply_rotary(k, start)
        return q, k, v

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """Concatenate heads ``[B, H, T, dh] -> [B, T, D]`` and apply the output projection."""
        B, _, T, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, self.d_model))

    def allowed_pairs(self, T: int, device: torch.device) -> torch.Tensor:
        """``[T, T]`` bool, True where query ``t`` may see key ``s`` (ignoring padding)."""
        full = torch.ones(T, T, dtype=torch.bool, device=device)
        return torch.tril(full) if self.causal else full

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Softmax attention over ``[B, H, T, dh]`` heads; padded keys hidden, each query sees itself."""
        if padding_mask is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        T = q.shape[2]
        allowed = padding_mask[:, None, None, :]
        if self.causal:
            allowed = allowed & self.allowed_pairs(T, q.device)
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)

    # ------------------------------------------------------------------------------ parallel form
    def _mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        return self.merge(self.attend(*self.heads(x), padding_mask))

    def _reference(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Explicit ``[T, T]`` scores, visibility mask and softmax."""
        q, k, v = self.heads(x)
        T = x.shape[1]
        allowed = self.allowed_pairs(T, x.device).expand(x.shape[0], 1, T, T)
        if padding_mask is not None:
            allowed = allowed & padding_mask[:, None, None, :]
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=x.device)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        return self.merge(weights @ v)

    # ----------------------------------------------------------------------------- streaming form
    def _init_state(self, batch_size: int) -> KVState:
        shape = (batch_size, self.n_heads, self.cache_capacity(1), self.head_dim)
        return KVState(0, self.qkv.weight.new_zeros(shape), self.qkv.weight.new_zeros(shape))

    def _step(self, x_t: torch.Tensor, state: KVState) -> tuple[torch.Tensor, KVState]:
        """Write the token's key and value (doubling the cache when it is full), attend over the filled slots."""
        pos = state.pos
        q, k, v = self.heads(x_t.unsqueeze(1), start=pos)
        slot = self.cache_slot(pos)
        keys, values = state.k, state.v
        if slot >= keys.shape[2]:
            capacity = self.cache_capacity(pos + 1)
            keys, values = grown(keys, capacity), grown(values, capacity)
        keys, values = write_slot(keys, slot, k), write_slot(values, slot, v)
        filled = min(pos + 1, keys.shape[2])
        y = F.scaled_dot_product_attention(q.to(keys.dtype), keys[:, :, :filled], values[:, :, :filled])
        return self.merge(y.to(q.dtype)).squeeze(1), KVState(pos + 1, keys, values)

    def _prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, KVState]:
        """Whole prompt in one parallel pass; the cache is filled from the prompt's keys and values."""
        q, k, v = self.heads(x)
        y = self.merge(self.attend(q, k, v, None))
        return y, KVState(x.shape[1], self._cache_from(k), self._cache_from(v))

    def _cache_from(self, k: torch.Tensor) -> torch.Tensor:
        """A cache of :meth:`cache_capacity` slots holding the prompt positions that fit, each at its slot."""
        T = k.shape[2]
        capacity = self.cache_capacity(T)
        kept = min(T, capacity)
        slots = self.cache_slot(torch.arange(T - kept, T, device=k.device))
        shape = (k.shape[0], self.n_heads, capacity, self.head_dim)
        cache = self.qkv.weight.new_zeros(shape)
        return cache.index_copy(2, slots, k[:, :, T - kept:].to(cache.dtype))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_heads={self.n_heads}" + (", rotary=True" if self.rotary else "")

