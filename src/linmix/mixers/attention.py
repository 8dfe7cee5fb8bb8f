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

Streaming keeps a KV cache preallocated to ``max_len`` positions: 2 * D floats per cached token, O(T)
memory per sequence, and step ``t`` costs O(t D) (it attends over the whole filled prefix).
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
    """Key and value caches ``[B, H, cache_len, dh]``; position ``p`` lives at slot ``p % cache_len``."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None


@register("attention")
class Attention(Mixer):
    """Multi-head softmax attention (fused qkv, scaled_dot_product_attention, KV cache for step).

    See the module docstring for the exact formula. Streaming state: :class:`KVState`, ``k`` and ``v``
    caches of shape ``[B, H, cache_len, dh]`` (``cache_len = max_len``): 2 * D floats per cached token,
    O(T) memory. :meth:`step` writes the cache in place when autograd is off, so the state passed in is
    consumed.
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
    def cache_len(self) -> int:
        """Positions the streaming KV cache holds."""
        return self.max_len

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
        shape = (batch_size, self.n_heads, self.cache_len, self.head_dim)
        return KVState(0, self.qkv.weight.new_zeros(shape), self.qkv.weight.new_zeros(shape))

    def _step(self, x_t: torch.Tensor, state: KVState) -> tuple[torch.Tensor, KVState]:
        pos = state.pos
        q, k, v = self.heads(x_t.unsqueeze(1), start=pos)
        slot = pos % self.cache_len
        keys, values = write_slot(state.k, slot, k), write_slot(state.v, slot, v)
        filled = min(pos + 1, self.cache_len)
        y = F.scaled_dot_product_attention(q.to(keys.dtype), keys[:, :, :filled], values[:, :, :filled])
        return self.merge(y.to(q.dtype)).squeeze(1), KVState(pos + 1, keys, values)

    def _prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, KVState]:
        """Whole prompt in one parallel pass; the cache is filled from the prompt's keys and values."""
        q, k, v = self.heads(x)
        y = self.merge(self.attend(q, k, v, None))
        return y, KVState(x.shape[1], self._cache_from(k), self._cache_from(v))

    def _cache_from(self, k: torch.Tensor) -> torch.Tensor:
        """A cache holding the last ``cache_len`` prompt positions, position ``p`` at slot ``p % cache_len``."""
        T = k.shape[2]
        kept = min(T, self.cache_len)
        slots = torch.arange(T - kept, T, device=k.device) % self.cache_len
        shape = (k.shape[0], self.n_heads, self.cache_len, self.head_dim)
        cache = self.qkv.weight.new_zeros(shape)
        return cache.index_copy(2, slots, k[:, :, T - kept:].to(cache.dtype))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_heads={self.n_heads}" + (", rotary=True" if self.rotary else "")

