"""Linear attention over feature-mapped queries and keys: the chunked causal kernel and the global one.

Inputs are ``phq = phi(q)``, ``phk = phi(k)`` (positive features, so every normaliser is > 0) and ``v``, each
``[B, H, T, dh]``; the output is ``y[t] = phq[t] S[t] / (phq[t] . z[t] + eps)`` with ``S[t] = sum phk[s] v[s]^T``
and ``z[t] = sum phk[s]`` over the visible keys ``s``: ``s <= t`` (causal) or all of them (global).

Causal, :func:`chunked_linear_attention`: T is padded to a multiple of ``chunk = C``; inside a chunk a masked
``[C, C]`` product, across chunks the state carried in from the earlier ones (an exclusive prefix sum over the
per-chunk ``phk^T v``, ``[B, H, T / C, dh, dh]``). Time O(T C dh + T dh^2), memory O(T C + T dh^2 / C) per
head: linear in T, with no ``[T, T]`` mask and no per-position ``[T, dh, dh]`` state. The explicit ``[T, T]``
form the tests compare against is :mod:`.naive`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from linmix.ops.prefix_sum.scan import prefix_sum


def _check(phq: torch.Tensor, phk: torch.Tensor, v: torch.Tensor) -> None:
    if phq.dim() != 4 or phk.shape != phq.shape or v.shape[:3] != phq.shape[:3]:
        raise ValueError("linear attention expects phq, phk: [B, H, T, dh] and v: [B, H, T, dv], got "
                         f"{list(phq.shape)}, {list(phk.shape)}, {list(v.shape)}")


def global_linear_attention(phq: torch.Tensor, phk: torch.Tensor, v: torch.Tensor, eps: float) -> torch.Tensor:
    """Bidirectional form over ``[B, H, T, dh]``: every query reads the same global ``S`` and ``z``, O(T dh^2)."""
    _check(phq, phk, v)
    state = phk.transpose(-1, -2) @ v
    norm = phk.sum(2).unsqueeze(-1)
    return (phq @ state) / (phq @ norm + eps)


def chunked_linear_attention(phq: torch.Tensor, phk: torch.Tensor, v: torch.Tensor, chunk: int,
                             eps: float) -> torch.Tensor:
    """Causal form over ``[B, H, T, dh]``: masked ``[C, C]`` products inside chunks, carried state across.

    The normaliser rides along as one extra value column of ones (``v' = [v, 1]``), so a single pair of
    matmuls yields numerator and denominator; the state carried into each chunk is an exclusive prefix sum
    over the per-chunk ``phi(k)^T v'`` (:func:`linmix.ops.prefix_sum`, which saves nothing for backward); the
    causal mask inside a chunk is a float multiply.
    """
    _check(phq, phk, v)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    B, H, T, dh = phq.shape
    dv = v.shape[-1]
    c = min(chunk, T)
    pad = -T % c
    v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)  # [B, H, T, dv + 1]
    q = F.pad(phq, (0, 0, 0, pad)).view(B, H, -1, c, dh)
    k = F.pad(phk, (0, 0, 0, pad)).view(B, H, -1, c, dh)
    v1 = F.pad(v1, (0, 0, 0, pad)).view(B, H, -1, c, dv + 1)
    n = q.shape[2]
    kv = k.transpose(-1, -2) @ v1  # [B, H, n, dh, dv + 1], one state increment per chunk
    flat = kv.reshape(B * H, n, dh * (dv + 1))
    state_in = (prefix_sum(flat) - flat).view(B, H, n, dh, dv + 1)  # exclusive: chunks strictly before
    past = torch.ones(c, c, dtype=q.dtype, device=q.device).tril()
    scores = (q @ k.transpose(-1, -2)) * past
    out = q @ state_in + scores @ v1  # [B, H, n, c, dv + 1]
    y = out[..., :dv] / (out[..., dv:] + eps)
    return y.reshape(B, H, n * c, dv)[:, :, :T]
