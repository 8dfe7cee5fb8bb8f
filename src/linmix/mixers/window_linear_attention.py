"""Sliding-window softmax attention plus linear attention over everything outside the window, in one layer:
the "linear + sliding window" attention of LoLCATs (arXiv 2410.10254) with Hedgehog feature maps
(arXiv 2402.04347). Recent tokens get exact softmax scores, older ones a learned linear-attention kernel,
and both share one normaliser, so the layer can stand in for a pretrained softmax attention layer.

What it computes, per head ``h`` of size ``dh``, with window ``w``::

    q, k, v = split_heads(W_qkv x + b_qkv)        # rotated by position when rotary (base rotary_base)
    window keys   W(t) = {s : t - w < s <= t}      (bidirectional: |t - s| < w)
    earlier keys  E(t) = {s : s <= t - w}          (bidirectional: |t - s| >= w)
    a[t, s] = exp(q_t . k_s / sqrt(dh) - m_t),    m_t = max over s in W(t) of q_t . k_s / sqrt(dh)
    b[t, s] = lam_h * phi_q(q_t) . phi_k(k_s),    phi(u) = [softmax(u A), softmax(-u A)]  (2 dh features)
    y_t = (sum_W a v + sum_E b v) / (sum_W a + sum_E b);   out = W_o concat_heads(y) + b_o

``A`` is a learned ``[dh, dh]`` map per head, one for queries and one for keys, initialised to the
identity; ``lam_h = exp(log_lam_h)`` (initially 1) weighs the linear part against the window's
max-normalised softmax weights (the largest of which is 1), as LoLCATs does. Padded keys are in neither
set; each query always sees itself, so the denominator is at least 1. The fused ``qkv`` and ``out``
Linears have the layout of :class:`~linmix.mixers.attention.Attention`, so :func:`linmix.convert` copies
a replaced attention's projections into them; the feature maps and ``lam`` are what is new.

Parallel form: T is split into blocks of ``b = min(w, T)``; each query block scores the keys of its own
and the previous block (and the next one, bidirectional) with an exact mask, and reads the linear state of
the blocks further away from prefix sums of the per-block ``phi(k)^T [v, 1]``. O(T w dh + T dh^2) time, no
``[T, T]`` object. Everything is computed in float32 at least. Streaming keeps a rolling cache of the last
``w`` keys and values plus the linear sums of the keys that left it (``S = sum phi(k) v^T``,
``z = sum phi(k)``): O(w D + D dh) memory per sequence whatever the position, so the mixer is length-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from linmix.mixers.attention import check_heads, check_positive_int, write_slot
from linmix.mixers.base import Mixer, MixerState
from linmix.mixers.registry import register
from linmix.ops.dtypes import accumulation_dtype
from linmix.ops.rotary import DEFAULT_BASE, apply_rotary


@dataclass
class WindowLinearState(MixerState):
    """Rolling caches ``k, v: [B, H, w, dh]`` (position ``p`` at slot ``p % w``) and the linear sums of the
    keys that left the window, ``S: [B, H, 2 dh, dh]`` and ``z: [B, H, 2 dh]``."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    S: torch.Tensor | None = None
    z: torch.Tensor | None = None


@register("window_linear_attention")
class WindowLinearAttention(Mixer):
    """Softmax attention over a sliding window plus Hedgehog linear attention over the rest, one normaliser.

    See the module docstring for the exact formula. Streaming state: :class:`WindowLinearState`, a rolling
    ``w``-token KV cache and ``H (2 dh^2 + 2 dh)`` linear-state floats per sequence, constant in the position.
    """

    test_grid = ({}, {"window": 5, "n_heads": 2}, {"window": 7, "rotary": True, "rotary_base": 100000.0})

    def __init__(self, d_model: int, max_len: int, causal: bool, window: int = 64, n_heads: int = 4,
                 rotary: bool = False, rotary_base: float = DEFAULT_BASE) -> None:
        super().__init__(d_model, max_len, causal)
        self.head_dim = check_heads(self.d_model, n_heads)
        self.window = check_positive_int("window", window)
        if not isinstance(rotary, bool):
            raise ValueError(f"rotary must be true or false, got {rotary!r}")
        if rotary and self.head_dim % 2:
            raise ValueError(f"rotary positions need an even head size; d_model={self.d_model} / "
                             f"n_heads={n_heads} = {self.head_dim}")
        if isinstance(rotary_base, bool) or not isinstance(rotary_base, (int, float)) or not rotary_base > 1:
            raise ValueError(f"rotary_base must be a number > 1, got {rotary_base!r}")
        self.n_heads, self.rotary, self.rotary_base = n_heads, rotary, float(rotary_base)
        self.qkv = nn.Linear(self.d_model, 3 * self.d_model)
        self.out = nn.Linear(self.d_model, self.d_model)
        eye = torch.eye(self.head_dim).expand(n_heads, -1, -1)
        self.feature_q = nn.Parameter(eye.clone())
        self.feature_k = nn.Parameter(eye.clone())
        self.log_linear_scale = nn.Parameter(torch.zeros(n_heads))

    @property
    def length_free(self) -> bool:
        """Relative (rotary) or no positions and a state of fixed size: the same mixer at every length."""
        return True

    # ------------------------------------------------------------------------------------ pieces
    def heads(self, x: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``q, k, v: [B, H, T, dh]`` in the working dtype, queries and keys rotated when ``rotary``."""
        B, T, _ = x.shape
        work = accumulation_dtype(x.dtype)
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4).to(work)
        q, k, v = qkv.unbind(0)
        if self.rotary:
            q, k = apply_rotary(q, start, self.rotary_base), apply_rotary(k, start, self.rotary_base)
        return q, k, v

    def features(self, u: torch.Tensor, which: nn.Parameter) -> torch.Tensor:
        """Hedgehog's ``phi(u) = [softmax(u A), softmax(-u A)]``: ``[B, H, T, dh] -> [B, H, T, 2 dh]``."""
        p = torch.einsum("bhtd,hde->bhte", u, which.to(u.dtype))
        return torch.cat([torch.softmax(p, dim=-1), torch.softmax(-p, dim=-1)], dim=-1)

    def scale(self, dtype: torch.dtype) -> torch.Tensor:
        """``lam: [H, 1, 1]`` broadcastable over ``[B, H, T, ...]``."""
        return self.log_linear_scale.to(dtype).exp()[:, None, None]

    def merge(self, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Concatenate heads ``[B, H, T, dh] -> [B, T, D]``, cast to ``dtype``, project out."""
        B, _, T, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, self.d_model).to(dtype))

    def in_window(self, offset: torch.Tensor) -> torch.Tensor:
        """True where a key ``offset = t - s`` positions before the query is in its softmax window."""
        if self.causal:
            return (offset >= 0) & (offset < self.window)
        return offset.abs() < self.window

    def in_linear(self, offset: torch.Tensor) -> torch.Tensor:
        """True where a key ``offset = t - s`` positions before the query is read by the linear part."""
        return offset >= self.window if self.causal else offset.abs() >= self.window

    def _parts(self, x: torch.Tensor, padding_mask: torch.Tensor | None):
        """``q, k, v, phi(q), phi(k), real keys [B, T]``; padded keys' features are zeroed."""
        q, k, v = self.heads(x)
        phq, phk = self.features(q, self.feature_q), self.features(k, self.feature_k)
        real = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if padding_mask is None else padding_mask
        return q, k, v, phq, torch.where(real[:, None, :, None], phk, 0.0), real

    # ------------------------------------------------------------------------------ parallel form
    def _neighbours(self, blocks: torch.Tensor) -> torch.Tensor:
        """``[..., n, b, f] -> [..., n, k b, f]``: each block's previous, own (and next) tokens, zero-filled."""
        empty = torch.zeros_like(blocks[..., :1, :, :])
        parts = [torch.cat([empty, blocks[..., :-1, :, :]], dim=-3), blocks]
        if not self.causal:
            parts.append(torch.cat([blocks[..., 1:, :, :], empty], dim=-3))
        return torch.cat(parts, dim=-2)

    def _far_state(self, kv: torch.Tensor) -> torch.Tensor:
        """Per query block ``i``, the sum of ``kv: [B, H, n, F, dv]`` over the blocks two or more away."""
        before = torch.cumsum(kv, dim=2) - kv  # blocks < i
        far = F.pad(before, (0, 0, 0, 0, 1, 0))[:, :, :-1]  # blocks < i - 1
        if not self.causal:
            after = torch.flip(torch.cumsum(torch.flip(kv, [2]), dim=2), [2]) - kv  # blocks > i
            far = far + F.pad(after, (0, 0, 0, 0, 0, 1))[:, :, 1:]  # blocks > i + 1
        return far

    def _mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        q, k, v, phq, phk, real = self._parts(x, padding_mask)
        B, H, T, dh = q.shape
        b = min(self.window, T)
        pad = -T % b

        def blocked(t: torch.Tensor) -> torch.Tensor:
            return F.pad(t, (0, 0, 0, pad)).view(B, H, -1, b, t.shape[-1])

        qb, phqb, kb, phkb, vb = (blocked(t) for t in (q, phq, k, phk, v))
        v1b = torch.cat([vb, torch.ones_like(vb[..., :1])], dim=-1)  # the normaliser as a column (1 past T too)
        keys = self._neighbours(F.pad(real, (0, pad), value=False).view(B, 1, -1, b, 1)).squeeze(-1)
        offset = b + torch.arange(b, device=x.device)[:, None] - torch.arange(keys.shape[-1], device=x.device)
        window = (keys[..., None, :] & self.in_window(offset)) | (offset == 0)  # [B, 1, n, b, k b]
        scores = (qb @ self._neighbours(kb).transpose(-1, -2)) / math.sqrt(dh)
        scores = scores.masked_fill(~window, float("-inf"))
        a = torch.exp(scores - scores.amax(-1, keepdim=True))
        near = (phqb @ self._neighbours(phkb).transpose(-1, -2)) * self.in_linear(offset).to(q.dtype)
        far = self._far_state(phkb.transpose(-1, -2) @ v1b)
        lam = self.scale(q.dtype)[:, :, None]
        values = self._neighbours(v1b)
        out = a @ values + lam * (near @ values + phqb @ far)
        y = (out[..., :dh] / out[..., dh:]).reshape(B, H, -1, dh)[:, :, :T]
        return self.merge(y, x.dtype)

    def _reference(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Explicit ``[T, T]`` window and linear weight matrices, one normaliser."""
        q, k, v, phq, phk, real = self._parts(x, padding_mask)
        T = x.shape[1]
        pos = torch.arange(T, device=x.device)
        offset = pos[:, None] - pos[None, :]
        eye = torch.eye(T, dtype=torch.bool, device=x.device)
        window = (self.in_window(offset) & real[:, None, None, :]) | eye
        scores = ((q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)).masked_fill(~window, float("-inf"))
        a = torch.exp(scores - scores.amax(-1, keepdim=True))
        lin = self.scale(q.dtype) * (phq @ phk.transpose(-1, -2)) * self.in_linear(offset).to(q.dtype)
        weights = a + lin
        return self.merge((weights @ v) / weights.sum(-1, keepdim=True), x.dtype)

    # ----------------------------------------------------------------------------- streaming form
    def _init_state(self, batch_size: int) -> WindowLinearState:
        work = accumulation_dtype(self.qkv.weight.dtype)
        kw = {"dtype": work, "device": self.qkv.weight.device}
        H, dh = self.n_heads, self.head_dim
        cache = (batch_size, H, self.window, dh)
        return WindowLinearState(0, torch.zeros(cache, **kw), torch.zeros(cache, **kw),
                                 torch.zeros(batch_size, H, 2 * dh, dh, **kw), torch.zeros(batch_size, H, 2 * dh, **kw))

    def _step(self, x_t: torch.Tensor, state: WindowLinearState) -> tuple[torch.Tensor, WindowLinearState]:
        """Move the key leaving the window into the linear sums, cache the new one, attend over both."""
        pos, slot = state.pos, state.pos % self.window
        q, k, v = (t.to(state.k.dtype) for t in self.heads(x_t.unsqueeze(1), start=pos))
        S, z = state.S, state.z
        if pos >= self.window:
            old = self.features(state.k[:, :, slot:slot + 1], self.feature_k)
            S = S + old.transpose(-1, -2) @ state.v[:, :, slot:slot + 1]
            z = z + old[:, :, 0]
        keys, values = write_slot(state.k, slot, k), write_slot(state.v, slot, v)
        filled = min(pos + 1, self.window)
        scores = (q @ keys[:, :, :filled].transpose(-1, -2)) / math.sqrt(self.head_dim)
        a = torch.exp(scores - scores.amax(-1, keepdim=True))
        phq, lam = self.features(q, self.feature_q), self.scale(q.dtype)
        num = a @ values[:, :, :filled] + lam * (phq @ S)
        den = a.sum(-1, keepdim=True) + lam * (phq @ z.unsqueeze(-1))
        y = self.merge(num / den, x_t.dtype).squeeze(1)
        return y, WindowLinearState(pos + 1, keys, values, S, z)

    def _prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, WindowLinearState]:
        """The prompt in one parallel pass; the cache holds its last ``w`` keys and values, the linear sums
        every key before them."""
        y = self._mix(x, None)
        q, k, v = self.heads(x)
        T, w = x.shape[1], self.window
        state = self._init_state(x.shape[0])
        kept = min(T, w)
        slots = torch.arange(T - kept, T, device=x.device) % w
        state.k.index_copy_(2, slots, k[:, :, T - kept:].to(state.k.dtype))
        state.v.index_copy_(2, slots, v[:, :, T - kept:].to(state.v.dtype))
        if T > w:
            phk = self.features(k[:, :, :T - w], self.feature_k)
            state.S, state.z = phk.transpose(-1, -2) @ v[:, :, :T - w], phk.sum(2)
        state.pos = T
        return y, state

    def extra_repr(self) -> str:
        rot = f", rotary=True, rotary_base={self.rotary_base:g}" if self.rotary else ""
        return f"{super().extra_repr()}, window={self.window}, n_heads={self.n_heads}{rot}"
