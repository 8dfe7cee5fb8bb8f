"""Kernelised linear attention (Katharopoulos et al. 2020, "Transformers are RNNs"), elu + 1 feature map.

What it computes, per head, with ``phi(u) = elu(u) + 1`` (positive, so every denominator is > 0)::

    q, k, v = W_q x + b_q, W_k x + b_k, W_v x + b_v             # split into H heads of size dh
    y[t] = phi(q[t]) S[t] / (phi(q[t]) . z[t] + eps)
    S[t] = sum_{s visible} phi(k[s]) v[s]^T,   z[t] = sum_{s visible} phi(k[s])
    out  = W_o concat_heads(y) + b_o

Visible means ``s <= t`` (causal) or every ``s`` (bidirectional), and never a padded key: ``phi(0) = 1``,
so padded keys' features are zeroed explicitly rather than relying on the zeroed input.

Bidirectional: one global ``S`` and ``z``, O(T H dh^2). Causal: the chunked form. T is padded to a multiple
of ``chunk = C``; inside a chunk a masked ``[C, C]`` product, across chunks the state carried in from
the earlier chunks (an exclusive prefix sum over the per-chunk sums, ``[B, H, T / C, dh, dh]``). Time
O(T C dh + T dh^2), memory O(T C + T dh^2 / C) per head: linear in T, with no ``[T, T]`` mask and no
per-position ``[T, dh, dh]`` state. Low-precision input is accumulated in float32.

Streaming state: the running ``S`` and ``z`` per head, ``H * (dh^2 + dh)`` floats per sequence, constant in
the position; each step costs O(D dh). Nothing depends on the position (order comes from causality and the
model's positions), so the mixer is length-free: sequences and decoding positions past ``max_len`` are fine.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from linmix.mixers.attention import check_heads, check_positive_int
from linmix.mixers.base import Mixer, MixerState
from linmix.mixers.registry import register
from linmix.ops.dtypes import accumulation_dtype
from linmix.ops.linear_attn import chunked_linear_attention, global_linear_attention, linear_attention_reference


def feature_map(u: torch.Tensor) -> torch.Tensor:
    """``phi(u) = elu(u) + 1``: positive features, so the normaliser never vanishes."""
    return F.elu(u) + 1.0


@dataclass
class LinearAttentionState(MixerState):
    """Running sums per head: ``S = sum phi(k) v^T: [B, H, dh, dh]`` and ``z = sum phi(k): [B, H, dh]``."""

    S: torch.Tensor | None = None
    z: torch.Tensor | None = None


@register("linear_attention")
class LinearAttention(Mixer):
    """Kernelised linear attention (elu + 1 features); chunked causal form, O(H dh^2) streaming state.

    See the module docstring for the exact formula. Streaming state: :class:`LinearAttentionState`,
    ``H (dh^2 + dh)`` floats per sequence (``D dh + D``), constant in the position: no per-token cache.
    """

    test_grid = ({}, {"chunk": 7, "n_heads": 2})

    def __init__(self, d_model: int, max_len: int, causal: bool, n_heads: int = 4, chunk: int = 64,
                 eps: float = 1e-6) -> None:
        super().__init__(d_model, max_len, causal)
        self.head_dim = check_heads(self.d_model, n_heads)
        self.n_heads = n_heads
        self.chunk = check_positive_int("chunk", chunk)
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.eps = float(eps)
        self.q, self.k, self.v, self.out = (nn.Linear(self.d_model, self.d_model) for _ in range(4))

    @property
    def length_free(self) -> bool:
        """No positions and a state of fixed size: the same mixer at every length."""
        return True

    # ------------------------------------------------------------------------------------ pieces
    def _split(self, t: torch.Tensor) -> torch.Tensor:
        """``[B, T, D] -> [B, H, T, dh]`` in the working dtype (float32 at least)."""
        B, T, _ = t.shape
        return t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2).to(accumulation_dtype(t.dtype))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``phi(q), phi(k), v``, each ``[B, H, T, dh]``; padded keys are *not* masked here.

        The three projections run as one matmul against the concatenated weights (same products, one
        larger GEMM and one for the input gradient instead of three).
        """
        weight = torch.cat([self.q.weight, self.k.weight, self.v.weight])
        bias = torch.cat([self.q.bias, self.k.bias, self.v.bias])
        q, k, v = F.linear(x, weight, bias).chunk(3, dim=-1)
        return feature_map(self._split(q)), feature_map(self._split(k)), self._split(v)

    def merge(self, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Concatenate heads ``[B, H, T, dh] -> [B, T, D]``, cast back to ``dtype``, project out."""
        B, _, T, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, self.d_model).to(dtype))

    # ------------------------------------------------------------------------------ parallel form
    def _visible_keys(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """``phi(q), phi(k), v`` with padded keys' features zeroed: ``phi(0) = 1`` would count them."""
        phq, phk, v = self.features(x)
        if padding_mask is not None:
            phk = torch.where(padding_mask[:, None, :, None], phk, 0.0)
        return phq, phk, v

    def _mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        phq, phk, v = self._visible_keys(x, padding_mask)
        if self.causal:
            y = chunked_linear_attention(phq, phk, v, self.chunk, self.eps)
        else:
            y = global_linear_attention(phq, phk, v, self.eps)
        return self.merge(y, x.dtype)

    def _reference(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """An explicit ``[T, T]`` masked kernel matrix (:func:`linmix.ops.linear_attn.linear_attention_reference`)."""
        y = linear_attention_reference(*self._visible_keys(x, padding_mask), self.eps, self.causal)
        return self.merge(y, x.dtype)

    # ----------------------------------------------------------------------------- streaming form
    def _init_state(self, batch_size: int) -> LinearAttentionState:
        weight = self.q.weight
        work = accumulation_dtype(weight.dtype)
        H, dh = self.n_heads, self.head_dim
        return LinearAttentionState(0, torch.zeros(batch_size, H, dh, dh, dtype=work, device=weight.device),
                                    torch.zeros(batch_size, H, dh, dtype=work, device=weight.device))

    def _step(self, x_t: torch.Tensor, state: LinearAttentionState) -> tuple[torch.Tensor, LinearAttentionState]:
        phq, phk, v = (t.to(state.S.dtype) for t in self.features(x_t.unsqueeze(1)))
        S = state.S + phk.transpose(-1, -2) @ v
        z = state.z + phk[:, :, 0]
        y = (phq @ S) / (phq @ z.unsqueeze(-1) + self.eps)
        return self.merge(y, x_t.dtype).squeeze(1), LinearAttentionState(state.pos + 1, S, z)

    def _prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, LinearAttentionState]:
        """Whole prompt in one chunked pass; the state is the sum over every prompt token."""
        phq, phk, v = self.features(x)
        y = self.merge(chunked_linear_attention(phq, phk, v, self.chunk, self.eps), x.dtype)
        return y, LinearAttentionState(x.shape[1], phk.transpose(-1, -2) @ v, phk.sum(2))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_heads={self.n_heads}, chunk={self.chunk}"

