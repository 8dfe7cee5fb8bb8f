"""Spectral mixing: a per-channel learned filter applied in the frequency domain.

What it computes, for ``x: [B, T, D]`` (channel d, time t)::

    bidirectional:  X = rfft(x, dim=T, norm="ortho")              # T//2 + 1 bins per channel
                    y = irfft(H_T * X, n=T, norm="ortho")          # circular: position 0 and T-1 are neighbours
    causal:         y[t, d] = sum_{s=0..t} k[d, s] * x[t - s, d]   # linear convolution, tap s = lag s
    both:           out = W_o y + b_o                              # option ``out_proj`` (default True)

The bidirectional filter ``H`` is learned at ``max_len`` resolution (``max_len//2 + 1`` complex bins per
channel, stored as real and imaginary parts, initialised to ``1 + N(0, 0.02^2)`` and ``N(0, 0.02^2)``, so
the layer starts near the identity). A length ``T`` input uses ``H_T``: the real and imaginary parts linearly
interpolated onto ``T//2 + 1`` evenly spaced bins (both grids span DC..Nyquist, so bin ``i`` of ``H_T``
sits at the same relative frequency as position ``i (F-1)/(n-1)`` of ``H``; ``T = max_len`` uses ``H``
unchanged). As in the spectral paper, the filtering is circular: it is a per-channel circular convolution over the
whole (padded) sequence. Zeroed padding contributes nothing, but the output at real positions does depend
on the padded length T, because ``H_T`` does.

The causal kernel ``k: [D, max_len]`` is initialised as a unit impulse at lag 0 plus small noise decaying
with the lag, and is applied as ``k[:, :T]`` through :func:`linmix.ops.causal_fft_conv` (zero padding to
``>= 2T``, so nothing wraps around and no output reads the future). FFTs run in float32 (float64 for float64
input) and the result is cast back, so bfloat16 works. Cost: O(D T log T) time for the mixing, O(T D) memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from linmix.mixers.base import Mixer, MixerState
from linmix.mixers.registry import register
from linmix.ops.dtypes import accumulation_dtype
from linmix.ops.fftconv import causal_conv_reference, causal_fft_conv_btd, circular_filter_btd

INIT_NOISE = 0.02
KERNEL_DECAY = 16.0  # lag scale (in tokens) of the initial kernel noise: long lags start near zero


def interpolate_bins(filt: torch.Tensor, n: int) -> torch.Tensor:
    """Linearly resample ``filt: [D, F]`` onto ``n`` evenly spaced points spanning the same range.

    Output bin ``i`` reads position ``i (F-1)/(n-1)`` (``0`` when ``n == 1``). Indices are computed in
    integer arithmetic, so ``n == F`` reproduces ``filt`` exactly.
    """
    F = filt.shape[-1]
    if n == F:  # every output bin sits exactly on an input bin (frac = 0): the filter itself
        return filt
    i = torch.arange(n, device=filt.device)
    num = i * (F - 1)
    den = max(n - 1, 1)
    lo = num // den
    hi = torch.clamp(lo + 1, max=F - 1)
    frac = (num % den).to(filt.dtype) / den
    return filt[:, lo] * (1 - frac) + filt[:, hi] * frac


@dataclass
class HistoryState(MixerState):
    """Every input consumed so far, ``[B, pos, D]``."""

    history: torch.Tensor | None = None


@register("spectral")
class SpectralMixer(Mixer):
    """Learned per-channel frequency filter (bidirectional) or causal FFT long convolution, then W_o.

    See the module docstring for the exact formulas. Streaming (causal only): a :class:`HistoryState` of
    all inputs so far, ``[B, t, D]``, from which ``y_t = sum_s k[s] x[t-s]`` is recomputed, so each step
    costs O(t D) time and the state O(t D) memory: a long convolution has no fixed-size state.
    """

    test_grid = ({}, {"out_proj": False})

    def __init__(self, d_model: int, max_len: int, causal: bool, out_proj: bool = True) -> None:
        super().__init__(d_model, max_len, causal)
        if causal:
            self.kernel = nn.Parameter(self._init_kernel(d_model, max_len))
        else:
            bins = max_len // 2 + 1
            self.filter_re = nn.Parameter(1.0 + INIT_NOISE * torch.randn(d_model, bins))
            self.filter_im = nn.Parameter(INIT_NOISE * torch.randn(d_model, bins))
        self.out = nn.Linear(d_model, d_model) if out_proj else None

    @staticmethod
    def _init_kernel(d_model: int, max_len: int) -> torch.Tensor:
        """Unit impulse at lag 0 (identity) plus N(0, 0.02^2) noise scaled by exp(-lag / 16)."""
        decay = torch.exp(-torch.arange(max_len, dtype=torch.float32) / KERNEL_DECAY)
        kernel = INIT_NOISE * torch.randn(d_model, max_len) * decay
        kernel[:, 0] += 1.0
        return kernel

    # ------------------------------------------------------------------------------------ pieces
    def filter_for(self, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The bidirectional filter resampled to the ``T//2 + 1`` rfft bins of a length-T input."""
        n = T // 2 + 1
        return interpolate_bins(self.filter_re, n), interpolate_bins(self.filter_im, n)

    def project(self, y: torch.Tensor) -> torch.Tensor:
        """Output projection (or identity when ``out_proj=False``)."""
        return self.out(y) if self.out is not None else y

    def _filter_fft(self, x: torch.Tensor) -> torch.Tensor:
        """Bidirectional path: circular per-channel filtering through rfft/irfft over T."""
        h_re, h_im = self.filter_for(x.shape[1])
        return circular_filter_btd(x, h_re, h_im)

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        """Causal path: FFT long convolution on the contiguous [B, D, T] layout."""
        T = x.shape[1]
        return causal_fft_conv_btd(x, self.kernel[:, :T])

    # ------------------------------------------------------------------------------ parallel form
    def _mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        y = self._convolve(x) if self.causal else self._filter_fft(x)
        return self.project(y)

    def _reference(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """A [T, T] Toeplitz product (causal) or an explicit real DFT (bidirectional)."""
        if self.causal:
            T = x.shape[1]
            y = causal_conv_reference(x.transpose(1, 2), self.kernel[:, :T]).transpose(1, 2)
        else:
            y = self._dft_reference(x)
        return self.project(y)

    def _dft_reference(self, x: torch.Tensor) -> torch.Tensor:
        """``irfft(H_T * rfft(x))`` written out with cosine/sine matrices.

        ``X_k = T^-1/2 sum_t x_t e^{-2 pi i k t / T}``, ``Z_k = H_k X_k`` and
        ``y_t = T^-1/2 sum_k c_k Re(Z_k e^{2 pi i k t / T})`` with ``c_k = 1`` for DC and (even T) Nyquist,
        ``2`` otherwise: the Hermitian half-spectrum sum that irfft evaluates.
        """
        T = x.shape[1]
        n = T // 2 + 1
        k = torch.arange(n, device=x.device)
        t = torch.arange(T, device=x.device)
        angle = (2 * math.pi / T) * ((k[:, None] * t[None, :]) % T).to(x.dtype)  # [n, T]
        cos, sin = torch.cos(angle), torch.sin(angle)
        scale = 1.0 / math.sqrt(T)
        x_re = scale * torch.einsum("kt,btd->bkd", cos, x)
        x_im = -scale * torch.einsum("kt,btd->bkd", sin, x)
        h_re, h_im = (h.transpose(0, 1).to(x.dtype) for h in self.filter_for(T))
        z_re = h_re * x_re - h_im * x_im
        z_im = h_re * x_im + h_im * x_re
        c = torch.full((n,), 2.0, dtype=x.dtype, device=x.device)
        c[0] = 1.0
        if T % 2 == 0:
            c[-1] = 1.0
        c = (c * scale)[:, None]
        return torch.einsum("kt,bkd->btd", cos * c, z_re) - torch.einsum("kt,bkd->btd", sin * c, z_im)

    # ----------------------------------------------------------------------------- streaming form
    def _init_state(self, batch_size: int) -> HistoryState:
        history = torch.zeros(batch_size, 0, self.d_model, dtype=self.kernel.dtype, device=self.kernel.device)
        return HistoryState(0, history)

    def _step(self, x_t: torch.Tensor, state: HistoryState) -> tuple[torch.Tensor, HistoryState]:
        """``y_t = sum_{s<=t} k[:, s] x_{t-s}`` from the stored history: O(t D) time and memory."""
        pos = state.pos
        history = torch.cat([state.history, x_t.unsqueeze(1).to(state.history.dtype)], dim=1)
        work = accumulation_dtype(x_t.dtype)
        taps = self.kernel[:, : pos + 1].flip(-1).transpose(0, 1).to(work)  # row i holds k[:, pos - i]
        y = torch.einsum("btd,td->bd", history.to(work), taps).to(x_t.dtype)
        return self.project(y), HistoryState(pos + 1, history)

    def _prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, HistoryState]:
        """Whole prompt through the FFT path; the state is the prompt itself."""
        return self._mix(x, None), HistoryState(x.shape[1], x.to(self.kernel.dtype))
