"""Spectral mixing: a per-channel learned filter applied in the frequency domain.

What it computes, for ``x: [B, T, D]`` (channel d, time t)::

    bidirectional:  X = rfft(x, dim=T, norm="ortho")              # T//2 + 1 bins per channel
                    y = irfft(H_T * X, n=T, norm="ortho")          # circular: position 0 and T-1 are neighbours
    causal:         y[t, d] = sum_{s=0..t} k[d, s] * x[t - s, d]   # linear convolution, tap s = lag s
    both:           out = W_o y + b_o                              # option ``out_proj`` (default True)

``kernel="explicit"`` (the default) learns the filter as a table. The bidirectional filter ``H`` is learned at
``max_len`` resolution (``max_len//2 + 1`` complex bins per channel, stored as real and imaginary parts,
initialised to ``1 + N(0, 0.02^2)`` and ``N(0, 0.02^2)``, so the layer starts near the identity). A length
``T`` input uses ``H_T``: the real and imaginary parts linearly interpolated onto ``T//2 + 1`` evenly spaced
bins (both grids span DC..Nyquist, so bin ``i`` of ``H_T`` sits at the same relative frequency as position
``i (F-1)/(n-1)`` of ``H``; ``T = max_len`` uses ``H`` unchanged). As in the spectral paper, the filtering is
circular: it is a per-channel circular convolution over the whole (padded) sequence. Zeroed padding
contributes nothing, but the output at real positions does depend on the padded length T, because ``H_T``
does. The causal kernel ``k: [D, max_len]`` is initialised as a unit impulse at lag 0 plus small noise
decaying with the lag (zero beyond lag ``max_len - 1``).

``kernel="implicit"`` computes ``k`` from the lag instead (Hyena's implicit filter,
:class:`linmix.mixers.spectral_kernels.ImplicitKernel`): defined at every length, evaluated once per forward
for the T needed, so the mixer is :attr:`length_free` (sequences and decoding past ``max_len``). The
bidirectional form is then a circular convolution with a two-sided implicit kernel, ``H_T = rfft(k_T)`` of
the kernel laid on the length-T circle (:meth:`ImplicitKernel.circular`), equally defined at every length.

``gate=True`` adds Hyena's short gate: ``[v, g] = ShortConv(W_in x)`` (one ``Linear(D, 2D)``, then a depthwise
causal 3-tap convolution), ``y = g * mix(v)``, then ``W_o``. Padded positions are zeroed after ``W_in`` and
after the short convolution, so their bias never reaches the long convolution.

The causal convolution runs through :func:`linmix.ops.causal_fft_conv` (zero padding to ``>= 2T``, so
nothing wraps around and no output reads the future). FFTs run in float32 (float64 for float64 input) and
the result is cast back, so bfloat16 works. Cost: O(D T log T) time for the mixing, O(T D) memory.

Streaming (causal): :class:`SpectralState` holds an :class:`linmix.ops.fftconv.OnlineConv`, the exact tiled
decoding of Flash Inference (Oncescu et al., arXiv 2410.12982): O(log^2 t) amortised work per token and
O(t D) memory (inputs so far and the future contributions), instead of re-reading the whole history at every
step. Prefill runs the prompt through the FFT path and builds that state from O(log P) tiles.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from linmix.mixers.base import Mixer, MixerState
from linmix.mixers.registry import register
from linmix.mixers.spectral_kernels import SHORT_TAPS, ImplicitKernel, ShortConv
from linmix.ops.dtypes import accumulation_dtype
from linmix.ops.fftconv import OnlineConv, causal_conv_reference, causal_fft_conv_btd, circular_filter_btd
from linmix.ops.masking import zero_padded

INIT_NOISE = 0.02
KERNEL_DECAY = 16.0  # lag scale (in tokens) of the initial kernel noise: long lags start near zero
KERNELS = ("explicit", "implicit")


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
class SpectralState(MixerState):
    """Decoding state: the long convolution's :class:`OnlineConv` and, with ``gate``, the short
    convolution's last two inputs ``tail: [B, 2, 2D]``."""

    conv: OnlineConv | None = None
    tail: torch.Tensor | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tail (if any) and every tensor of the long convolution's state (``conv.*``)."""
        held = super().tensors()
        if self.conv is not None:
            held.update({f"conv.{name}": t for name, t in self.conv.tensors().items()})
        return held

    def __deepcopy__(self, memo: dict) -> SpectralState:
        tail = None if self.tail is None else self.tail.clone()
        return dataclasses.replace(self, conv=None if self.conv is None else self.conv.clone(), tail=tail)


@register("spectral")
class SpectralMixer(Mixer):
    """Learned per-channel frequency filter (bidirectional) or causal FFT long convolution, then W_o.

    See the module docstring for the exact formulas and options. Streaming (causal only): a
    :class:`SpectralState`; each step costs O(log^2 t) amortised, the state O(t D) memory (a long convolution
    has no fixed-size state).
    """

    test_grid = ({}, {"out_proj": False}, {"kernel": "implicit"}, {"kernel": "implicit", "gate": True})

    def __init__(self, d_model: int, max_len: int, causal: bool, out_proj: bool = True,
                 kernel: str = "explicit", gate: bool = False) -> None:
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if not isinstance(gate, bool):
            raise ValueError(f"gate must be True or False, got {gate!r}")
        super().__init__(d_model, max_len, causal)
        self.kernel_kind = kernel
        if kernel == "implicit":
            self.implicit = ImplicitKernel(d_model, max_len, sides=1 if causal else 2)
        elif causal:
            self.kernel = nn.Parameter(self._init_kernel(d_model, max_len))
        else:
            bins = max_len // 2 + 1
            self.filter_re = nn.Parameter(1.0 + INIT_NOISE * torch.randn(d_model, bins))
            self.filter_im = nn.Parameter(INIT_NOISE * torch.randn(d_model, bins))
        self.gate_in = nn.Linear(d_model, 2 * d_model) if gate else None
        self.short = ShortConv(2 * d_model) if gate else None
        self.out = nn.Linear(d_model, d_model) if out_proj else None

    @staticmethod
    def _init_kernel(d_model: int, max_len: int) -> torch.Tensor:
        """Unit impulse at lag 0 (identity) plus N(0, 0.02^2) noise scaled by exp(-lag / 16)."""
        decay = torch.exp(-torch.arange(max_len, dtype=torch.float32) / KERNEL_DECAY)
        kernel = INIT_NOISE * torch.randn(d_model, max_len) * decay
        kernel[:, 0] += 1.0
        return kernel

    @property
    def length_free(self) -> bool:
        """The implicit kernel is defined at every lag; the explicit one has ``max_len`` taps."""
        return self.kernel_kind == "implicit"

    def length_tie(self) -> str:
        if self.length_free:
            return ""
        table = "kernel has max_len taps" if self.causal else "filter is learned at max_len resolution"
        return f"its explicit {table} (build it with kernel=implicit)"

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel={self.kernel_kind}, gate={self.gate_in is not None}"

    # ------------------------------------------------------------------------------------ pieces
    def causal_kernel(self, start: int, stop: int) -> torch.Tensor:
        """Lags ``start .. stop - 1`` of the causal kernel, ``[D, stop - start]`` (explicit: zero past max_len)."""
        if self.kernel_kind == "implicit":
            return self.implicit(start, stop)
        taps = self.kernel[:, start:stop]
        missing = stop - start - taps.shape[1]
        return taps if missing == 0 else torch.cat([taps, taps.new_zeros(self.d_model, missing)], dim=1)

    def filter_for(self, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The bidirectional filter at the ``T//2 + 1`` rfft bins of a length-T input (real, imaginary)."""
        if self.kernel_kind == "implicit":
            h = torch.fft.rfft(self.implicit.circular(T))
            return h.real, h.imag
        n = T // 2 + 1
        return interpolate_bins(self.filter_re, n), interpolate_bins(self.filter_im, n)

    def project(self, y: torch.Tensor) -> torch.Tensor:
        """Output projection (or identity when ``out_proj=False``)."""
        return self.out(y) if self.out is not None else y

    def branches(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(v, g)``: the long convolution's input and the gate (``(x, None)`` without ``gate``)."""
        if self.gate_in is None:
            return x, None
        u = self.short(zero_padded(self.gate_in(x), padding_mask))
        v, g = zero_padded(u, padding_mask).chunk(2, dim=-1)
        return v, g

    def _filter_fft(self, x: torch.Tensor) -> torch.Tensor:
        """Bidirectional path: circular per-channel filtering through rfft/irfft over T."""
        h_re, h_im = self.filter_for(x.shape[1])
        return circular_filter_btd(x, h_re, h_im)

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        """Causal path: FFT long convolution on the contiguous [B, D, T] layout."""
        return causal_fft_conv_btd(x, self.causal_kernel(0, x.shape[1]))

    def _finish(self, y: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        """The gate (if any) on the mixed value, then the output projection."""
        return self.project(y if g is None else g * y)

    # ------------------------------------------------------------------------------ parallel form
    def _mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        v, g = self.branches(x, padding_mask)
        return self._finish(self._convolve(v) if self.causal else self._filter_fft(v), g)

    def _reference(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """A [T, T] Toeplitz product (causal) or an explicit real DFT (bidirectional)."""
        v, g = self.branches(x, padding_mask)
        if self.causal:
            kernel = self.causal_kernel(0, v.shape[1])
            y = causal_conv_reference(v.transpose(1, 2), kernel.to(v.dtype)).transpose(1, 2)
        else:
            y = self._dft_reference(v)
        return self._finish(y, g)

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
    def _work_dtype(self) -> torch.dtype:
        return accumulation_dtype(next(self.parameters()).dtype)

    def _init_state(self, batch_size: int) -> SpectralState:
        conv = OnlineConv.empty(batch_size, self.causal_kernel, self._work_dtype())
        tail = None
        if self.short is not None:
            tail = self.gate_in.weight.new_zeros(batch_size, SHORT_TAPS - 1, 2 * self.d_model)
        return SpectralState(0, conv, tail)

    def _step(self, x_t: torch.Tensor, state: SpectralState) -> tuple[torch.Tensor, SpectralState]:
        """``y_t = k[0] x_t + (the past's contributions, accumulated ahead)``: O(log^2 t) amortised."""
        tail, g = state.tail, None
        v = x_t
        if self.short is not None:
            u, tail = self.short.step(self.gate_in(x_t), tail)
            v, g = u.chunk(2, dim=-1)
        y, conv = state.conv.step(v)
        return self._finish(y.to(x_t.dtype), g), SpectralState(state.pos + 1, conv, tail)

    def _prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, SpectralState]:
        """Whole prompt through the FFT path; the state as if it had been decoded token by token."""
        v, g, tail = x, None, None
        if self.short is not None:
            u = self.gate_in(x)
            v, g = self.short(u).chunk(2, dim=-1)
            tail = self.short.tail(u)
        y = self._finish(self._convolve(v), g)
        conv = OnlineConv.after(v.transpose(1, 2), self.causal_kernel, self._work_dtype())
        return y, SpectralState(x.shape[1], conv, tail)
