"""Causal long convolution through the FFT, zero-padded so it neither wraps around nor looks ahead.

``y[b, d, t] = sum_{s=0..t} k[d, s] * x[b, d, t - s]``. Both signals are zero-padded to a length
``n >= 2T`` before the FFT, so the circular convolution the FFT computes equals the linear one on the first
T outputs: no output reads a future input and nothing wraps from the end to the start. The FFT runs over
the contiguous last axis (``[B, D, T]``), which is markedly faster on CPU than over T in ``[B, T, D]``.
"""
from __future__ import annotations

import torch


def _fft_len(T: int) -> int:
    """Smallest power of two >= 2T (fast radix-2 FFT sizes)."""
    n = 1
    while n < 2 * T:
        n *= 2
    return n


def causal_fft_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Causal depthwise convolution of ``x: [B, D, T]`` with ``kernel: [D, T]`` (tap s = lag s)."""
    T = x.shape[-1]
    if kernel.shape[-1] != T:
        raise ValueError(f"kernel length {kernel.shape[-1]} must equal the sequence length {T}")
    n = _fft_len(T)
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = torch.fft.rfft(x.to(work), n=n)
    kf = torch.fft.rfft(kernel.to(work), n=n)
    y = torch.fft.irfft(xf * kf, n=n)[..., :T]
    return y.to(x.dtype)


def causal_conv_reference(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The same convolution as an explicit [T, T] Toeplitz product (slow, obviously correct)."""
    T = x.shape[-1]
    t = torch.arange(T)
    lag = t[:, None] - t[None, :]  # [t_out, t_in]
    valid = lag >= 0
    toeplitz = kernel[:, lag.clamp(min=0)] * valid  # [D, T_out, T_in]
    return torch.einsum("dij,bdj->bdi", toeplitz, x)
