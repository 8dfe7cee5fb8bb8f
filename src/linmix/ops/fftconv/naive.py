"""The FFT kernels of :mod:`.fft` as explicit ``[T, T]`` matrix products: slow, obviously correct, differentiable.

No FFT appears here: the causal convolution is a lower-triangular Toeplitz matrix per channel and the circular
filter a circulant matrix whose taps come from the half-spectrum by the inverse real DFT written as a
cosine/sine sum.
"""
from __future__ import annotations

import math

import torch


def causal_conv_reference(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``y[b, d, t] = sum_{s <= t} kernel[d, t - s] x[b, d, s]`` for ``x: [B, D, T]``, ``kernel: [D, T]``."""
    T = x.shape[-1]
    t = torch.arange(T, device=x.device)
    lag = t[:, None] - t[None, :]  # [t_out, t_in]
    toeplitz = kernel[:, lag.clamp(min=0)] * (lag >= 0)  # [D, T_out, T_in], zero above the diagonal
    return torch.einsum("dij,bdj->bdi", toeplitz, x)


def circular_filter_reference(x: torch.Tensor, h_re: torch.Tensor, h_im: torch.Tensor) -> torch.Tensor:
    """``irfft(H rfft(x, norm="ortho"), n=T, norm="ortho")`` over T of ``x: [B, T, D]``, as a circulant product.

    With ``H = h_re + i h_im: [D, T//2+1]`` the map is ``y[t] = sum_s M[t, s] x[s]`` where
    ``M[t, s] = (1/T) sum_f c_f Re(H_f exp(2 pi i f (t - s) / T))`` and ``c_f`` counts the bins the
    Hermitian half-spectrum stands for (1 at DC and, for even T, at Nyquist; 2 elsewhere). Computed in
    float64 and cast back to ``x.dtype``.
    """
    T = x.shape[1]
    f = torch.arange(T // 2 + 1, dtype=torch.float64, device=x.device)
    lag = torch.arange(T, device=x.device)
    c = torch.full_like(f, 2.0)
    c[0] = 1.0
    if T % 2 == 0:
        c[-1] = 1.0
    theta = 2 * math.pi * f[:, None] * lag.double() / T  # [F, T]: bin f at lag m
    taps = (h_re.double() * c) @ theta.cos() - (h_im.double() * c) @ theta.sin()  # [D, T], T times the taps
    circulant = taps[:, (lag[:, None] - lag[None, :]) % T] / T  # [D, T_out, T_in]: M[t, s] = k[(t - s) mod T]
    return torch.einsum("dij,bjd->bid", circulant, x.double()).to(x.dtype)
