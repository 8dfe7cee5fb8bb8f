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
the position; each step costs O(D dh).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from linmix.mixers.attention import check_heads, check_positive_int
from linmix.mixers.base import Mixer, State
from linmix.mixers.registry import register
from linmix.ops.prefix_sum import prefix_sum


def feature_map(u: torch.Tensor) -> torch.Tensor:
    """``phi(u) = elu(u) + 1``: positive features, so the normaliser never vanishes."""
    return F.elu(u) + 1.0


def global_linear_attention(phq: torch.Tensor, phk: torch.Tensor, v: torch.Tensor, eps: float) -> torch.Tensor:
    """Bidirectional form over ``[B, H, T, dh]``: every query reads the same global ``S`` and ``z``."""
    state = phk.transpose(-1, -2) @ v
    norm = phk.sum(2).unsqueeze(-1)
    return (phq @ state) / (phq @ norm + eps)


def _exclusive_cumsum(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum of the entries strictly before each index along ``dim`` (zero for the first)."""
    total = t.cumsum(dim)
    return torch.cat([torch.zeros_like(total.narrow(dim, 0, 1)), total.narrow(dim, 0, t.shape[dim] - 1)], dim)


def chunked_linear_attention_reference(phq: torch.Tensor, phk: torch.Tensor, v: torch.Tensor, chunk: int,
                                       eps: float) -> torch.Tensor:
    """The chunked causal form written step by step (numerator and normaliser apart); kept for comparison."""
    B, H, T, dh = phq.shape
    c = min(chunk, T)
    pad = -T % c
    phq, phk, v = (F.pad(t, (0, 0, 0, pad)).view(B, H, -1, c, dh) for t in (phq, phk, v))
    state_in = _exclusive_cumsum(phk.transpose(-1, -2) @ v, dim=2)
    norm_in = _exclusive_cumsum(phk.sum(3), dim=2).unsqueeze(-1)
    past = torch.ones(c, c, dtype=torch.bool, device=phq.device).tril()
    scores = (phq @ phk.transpose(-1, -2)).masked_fill(~past, 0.0)
    num = phq @ state_in + scores @ v
    den = phq @ norm_in + scores.sum(-1, keepdim=True) + eps
    return (num / den).view(B, H, -1, dh)[:, :, :T]


def chunked_linear_attention(phq: torch.Tensor, phk: torch.Tensor, v: torch.Tensor, chunk: int,
                             eps: float) -> torch.Tensor:
    """Causal form over ``[B, H, T, dh]``: masked ``[C, C]`` products inside chunks, carried state across.

    The normaliser rides along as one extra value column of ones (``v' = [v, 1]``), so a single pair of
    matmuls yields numerator and denominator; the state carried into each chunk is an exclusive prefix sum
    over the per-chunk ``phi(k)^T v'`` (:func:`linmix.ops.prefix_sum`, which saves nothing for backward); the
    causal mask inside a chunk is a float multiply.
    """
    B, H, T, dh = phq.shape
    c = min(chunk, T)
    pad = -T % c
    v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)  # [B, H, T, dh + 1]
    q = F.pad(phq, (0, 0, 0, pad)).view(B, H, -1, c, dh)
    k = F.pad(phk, (0, 0, 0, pad)).view(B, H, -1, c, dh)
    v1 = F.pad(v1, (0, 0, 0, pad)).view(B, H, -1, c, dh + 1)
    n = q.shape[2]
    kv = k.transpose(-1, -2) @ v1  # [B, H, n, dh, dh + 1], one state increment per chunk
    flat = kv.reshape(B * H, n, dh * (dh + 1))
    state_in = (prefix_sum(flat) - flat).view(B, H, n, dh, dh + 1)  # exclusive: chunks strictly before
    past = torch.ones(c, c, dtype=q.dtype, device=q.device).tril()
    scores = (q @ k.transpose(-1, -2)) * past
    out = q @ state_in + scores @ v1  # [B, H, n, c, dh + 1]
    y = out[..., :dh] / (out[..., dh:] + eps)
    return y.reshape(B, H, n * c, dh)[:, :, :T]


class LinearAttention(Mixer):
    """Multi-head linear attention with ``phi = elu + 1``. See the module docstring for the exact formula.

    Streaming state: ``S: [B, H, dh, dh]``, ``z: [B, H, dh]`` and the position: ``H (dh^2 + dh)`` floats
    per sequence (``D dh + D``), constant in the position: no per-token cache.
    """

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

    # ------------------------------------------------------------------------------------ pieces
    def _split(self, t: torch.Tensor) -> torch.Tensor:
        """``[B, T, D] -> [B, H, T, dh]`` in the working dtype (float32 at least)."""
        B, T, _ = t.shape
        work = torch.promote_types(t.dtype, torch.float32)
        return t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2).to(work)

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
    def mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        phq, phk, v = self.features(x)
        if padding_mask is not None:
            phk = phk * padding_mask[:, None, :, None].to(phk.dtype)
        if self.causal:
            y = chunked_linear_attention(phq, phk, v, self.chunk, self.eps)
        else:
            y = global_linear_attention(phq, phk, v, self.eps)
        return self.merge(y, x.dtype)

    def reference(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Slow, obviously-correct form: an explicit ``[T, T]`` masked kernel matrix (for tests only).

        Follows the whole :meth:`forward` contract: padded inputs and outputs are zeroed.
        """
        if padding_mask is not None:
            x = x * padding_mask.unsqueeze(-1).to(x.dtype)
        phq, phk, v = self.features(x)
        T = x.shape[1]
        visible = torch.ones(T, T, dtype=torch.bool, device=x.device)
        visible = torch.tril(visible) if self.causal else visible
        if padding_mask is not None:
            visible = visible & padding_mask[:, None, None, :]
        kernel = (phq @ phk.transpose(-1, -2)) * visible.to(phq.dtype)
        y = self.merge((kernel @ v) / (kernel.sum(-1, keepdim=True) + self.eps), x.dtype)
        if padding_mask is not None:
            y = y * padding_mask.unsqueeze(-1).to(y.dtype)
        return y

    # ----------------------------------------------------------------------------- streaming form
    def _require_causal(self) -> None:
        if not self.causal:
            raise NotImplementedError("a bidirectional LinearAttention has no streaming form; build with causal=True")

    def init_state(self, batch_size: int) -> State:
        self._require_causal()
        weight = self.q.weight
        work = torch.promote_types(weight.dtype, torch.float32)
        H, dh = self.n_heads, self.head_dim
        return {
            "S": torch.zeros(batch_size, H, dh, dh, dtype=work, device=weight.device),
            "z": torch.zeros(batch_size, H, dh, dtype=work, device=weight.device),
            "pos": 0,
        }

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        self.check_step(x_t, state)
        phq, phk, v = (t.to(state["S"].dtype) for t in self.features(x_t.unsqueeze(1)))
        S = state["S"] + phk.transpose(-1, -2) @ v
        z = state["z"] + phk[:, :, 0]
        y = (phq @ S) / (phq @ z.unsqueeze(-1) + self.eps)
        return self.merge(y, x_t.dtype).squeeze(1), {"S": S, "z": z, "pos": int(state["pos"]) + 1}

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Whole prompt in one chunked pass; the state is the sum over every prompt token."""
        self.check_input(x)
        self._require_causal()
        phq, phk, v = self.features(x)
        y = self.merge(chunked_linear_attention(phq, phk, v, self.chunk, self.eps), x.dtype)
        state = {"S": phk.transpose(-1, -2) @ v, "z": phk.sum(2), "pos": x.shape[1]}
        return y, state

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_heads={self.n_heads}, chunk={self.chunk}"


@register("linear_attention")
def linear_attention(d_model: int, max_len: int, causal: bool, n_heads: int = 4, chunk: int = 64) -> LinearAttention:
    """Kernelised linear attention (elu + 1 features); chunked causal form, O(H dh^2) streaming state."""
    return LinearAttention(d_model, max_len, causal, n_heads=n_heads, chunk=chunk)
