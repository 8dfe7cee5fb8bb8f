"""Rotary position embedding (RoPE, Su et al., arXiv 2104.09864): positions as rotations of query/key pairs.

For a head of even size ``dh``, channel ``i < dh/2`` is paired with channel ``i + dh/2`` (the half-split
layout) and the pair at absolute position ``p`` is rotated by the angle ``p * base^(-2i/dh)``. A query at
``t`` and a key at ``s`` rotated this way have a dot product that depends on ``t - s`` only, so attention
scores are relative and defined at every length: nothing is learned per position, and a model trained at
256 tokens computes the same function of offsets at 64k. The angles are computed in float32 (float64 for
float64 inputs) from integer positions, so position 65,535 is as exact as position 5.
"""
from __future__ import annotations

import torch

DEFAULT_BASE = 10000.0


def rotary_angles(positions: torch.Tensor, head_dim: int, base: float = DEFAULT_BASE,
                  dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin`` of shape ``[len(positions), head_dim // 2]`` for integer ``positions``."""
    if head_dim % 2:
        raise ValueError(f"rotary positions need an even head size, got {head_dim}; change d_model or n_heads")
    work = torch.float64 if dtype == torch.float64 else torch.float32
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=work) / head_dim)
    angles = positions.to(work)[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, start: int = 0, base: float = DEFAULT_BASE) -> torch.Tensor:
    """Rotate ``x: [B, H, T, dh]`` whose token ``j`` sits at absolute position ``start + j``."""
    T, dh = x.shape[-2], x.shape[-1]
    positions = torch.arange(start, start + T, device=x.device)
    cos, sin = rotary_angles(positions, dh, base, x.dtype)
    half = dh // 2
    a, b = x[..., :half].to(cos.dtype), x[..., half:].to(cos.dtype)
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1).to(x.dtype)


def rotary_reference(x: torch.Tensor, start: int = 0, base: float = DEFAULT_BASE) -> torch.Tensor:
    """The same rotation as explicit 2x2 matrices, one pair at a time, in float64 (for tests)."""
    T, dh = x.shape[-2], x.shape[-1]
    half = dh // 2
    out = x.double().clone()
    for j in range(T):
        for i in range(half):
            theta = torch.tensor((start + j) * base ** (-2 * i / dh), dtype=torch.float64)
            c, s = torch.cos(theta), torch.sin(theta)
            a, b = x[..., j, i].double(), x[..., j, i + half].double()
            out[..., j, i], out[..., j, i + half] = a * c - b * s, a * s + b * c
    return out.to(x.dtype)
