"""Causal long convolution through the FFT, zero-padded so it neither wraps around nor looks ahead.

``y[b, d, t] = sum_{s=0..t} k[d, s] * x[b, d, t - s]``. Both signals are zero-padded to a length
``n >= 2T`` before the FFT, so the circular convolution the FFT computes equals the linear one on the first
T outputs: no output reads a future input and nothing wraps from the end to the start. The FFT runs over
the contiguous last axis (``[B, D, T]``), which is markedly faster on CPU than over T in ``[B, T, D]``.

The fast path is one custom autograd function (:class:`_CausalFFTConv`) with the adjoint written out:
with ``X, K, G`` the zero-padded spectra of ``x``, ``k`` and the output gradient ``g``::

    y  = irfft(X K)[:T]                 dL/dx = irfft(G conj(K))[:T]          dL/dk = irfft(sum_b G conj(X))[:T]

so a forward+backward costs six FFTs, the spectra ``X, K`` are saved (not recomputed), the batch sum of
``dL/dk`` happens in the frequency domain (one inverse FFT per channel, not per sequence), no conjugate is
materialised (see :class:`_CausalFFTConv`), and the layout change ``[B, T, D] <-> [B, D, T]`` rides on the
copies the zero padding and the gradient gather make anyway; the forward output in ``[B, T, D]`` layout is a
transposed view that the output projection's matmul reads directly (:func:`causal_fft_conv_btd`). Long
sequences run in channel groups (:func:`channel_groups`) so no buffer crosses glibc's 32 MiB mmap threshold.
:func:`circular_filter_btd` is the bidirectional spectral mixer's ``irfft(H rfft(x))`` with the same
treatment. The explicit ``[T, T]`` products the tests compare both against are in :mod:`.naive`. Everything
is computed in :func:`linmix.ops.dtypes.accumulation_dtype` of the input and cast back.
"""
from __future__ import annotations

import torch

from linmix.ops.dtypes import accumulation_dtype


def _fft_len(T: int) -> int:
    """Smallest power of two >= 2T (fast radix-2 FFT sizes)."""
    n = 1
    while n < 2 * T:
        n *= 2
    return n


#: spectrum bytes per channel group: keeps every FFT buffer below glibc's 32 MiB mmap threshold, so long
#: sequences reuse heap memory instead of page-faulting fresh mappings on every call (and stay in cache longer)
GROUP_BYTES = 24 * 2**20


def channel_groups(B: int, D: int, n: int, itemsize: int) -> list[tuple[int, int]]:
    """Split D channels into equal groups whose ``[B, g, n/2+1]`` complex spectrum fits :data:`GROUP_BYTES`."""
    per_channel = B * (n // 2 + 1) * 2 * itemsize
    k = max(1, -(-D * per_channel // GROUP_BYTES))
    size = -(-D // k)
    return [(a, min(D, a + size)) for a in range(0, D, size)]


class _CausalFFTConv(torch.autograd.Function):
    """``x`` in ``[B, D, T]`` (``btd=False``) or ``[B, T, D]`` (``btd=True``) layout; ``kernel: [D, T]``.

    Channels are processed in groups (:func:`channel_groups`; one group up to T ~ 8k at D = 256). Backward
    without conjugate copies: ``irfft(G conj(Z))[t] = irfft(conj(G) Z)[(-t) mod n]`` for real signals, so the
    output gradient's spectrum is conjugated once, in place, and both gradients are read back time-reversed.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: torch.Tensor, btd: bool) -> torch.Tensor:  # noqa: D401
        T = x.shape[1] if btd else x.shape[-1]
        n = _fft_len(T)
        work = accumulation_dtype(x.dtype)
        xt = x.transpose(1, 2) if btd else x  # [B, D, T]
        B, D = xt.shape[0], xt.shape[1]
        groups = channel_groups(B, D, n, torch.finfo(work).bits // 8)
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        spectra, y = [], None
        if len(groups) > 1:
            y = torch.empty(B, D, T, dtype=work, device=x.device)
        for a, b in groups:
            xf = torch.fft.rfft(xt[:, a:b].to(work), n=n)  # the zero padding copies into the [B, g, n] layout
            kf = torch.fft.rfft(kernel[a:b].to(work), n=n)
            prod = xf * kf if need_grad else xf.mul_(kf)
            full = torch.fft.irfft(prod, n=n)
            del prod
            if y is None:
                y = full[..., :T]  # a single group: keep the view, no copy
            else:
                y[:, a:b] = full[..., :T]
            del full
            if need_grad:
                spectra += [xf, kf]
        if need_grad:
            ctx.save_for_backward(*spectra)
        ctx.btd, ctx.T, ctx.n, ctx.groups = btd, T, n, groups
        ctx.dtypes = (x.dtype, kernel.dtype)
        if btd:
            # a [B, T, D] view of the [B, D, .] result: the next matmul reads it transposed, no copy
            y = y.transpose(1, 2)
            return y if y.dtype == x.dtype else y.to(x.dtype)
        return y.contiguous().to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        spectra = ctx.saved_tensors
        T, n, btd = ctx.T, ctx.n, ctx.btd
        work = spectra[0].real.dtype
        gt = grad.transpose(1, 2) if btd else grad  # [B, D, T]
        B, D = gt.shape[0], gt.shape[1]
        need_x, need_k = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gx = torch.empty(B, D, T, dtype=work, device=grad.device) if need_x else None
        gk = torch.empty(D, T, dtype=work, device=grad.device) if need_k else None
        for i, (a, b) in enumerate(ctx.groups):
            xf, kf = spectra[2 * i], spectra[2 * i + 1]
            gf = torch.fft.rfft(gt[:, a:b].to(work), n=n).conj_physical_()  # conj(G), in place
            if need_k:
                cross = xf * gf  # saved tensors stay untouched (backward may run twice with retain_graph)
                cross = cross[0] if cross.shape[0] == 1 else cross.sum(0)
                _time_reversed_into(torch.fft.irfft(cross, n=n), gk[a:b])
                del cross
            if need_x:
                _time_reversed_into(torch.fft.irfft(gf.mul_(kf), n=n), gx[:, a:b])
            del gf
        if need_x:
            gx = (gx.transpose(1, 2).contiguous() if btd else gx).to(ctx.dtypes[0])
        if need_k:
            gk = gk.to(ctx.dtypes[1])
        return gx, gk, None


def _time_reversed_into(full: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out[..., t] = full[..., (-t) mod n]`` for ``t < T = out.shape[-1]``: the head stays, the tail flips."""
    n, T = full.shape[-1], out.shape[-1]
    out[..., :1] = full[..., :1]
    if T > 1:
        out[..., 1:] = full[..., n - T + 1:].flip(-1)
    return out


def _time_reversed(full: torch.Tensor, T: int) -> torch.Tensor:
    """``out[..., t] = full[..., (-t) mod n]`` for ``t < T`` (a flip of the tail, the head stays), contiguous."""
    n = full.shape[-1]
    return torch.cat([full[..., :1], full[..., n - T + 1:].flip(-1)], dim=-1)


def _check(x: torch.Tensor, kernel: torch.Tensor, T: int) -> None:
    if kernel.shape[-1] != T:
        raise ValueError(f"kernel length {kernel.shape[-1]} must equal the sequence length {T}")


def causal_fft_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Causal depthwise convolution of ``x: [B, D, T]`` with ``kernel: [D, T]`` (tap s = lag s)."""
    _check(x, kernel, x.shape[-1])
    return _CausalFFTConv.apply(x, kernel, False)


def causal_fft_conv_btd(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The same convolution for ``x: [B, T, D]``; returns ``[B, T, D]`` (a transposed view: no copy made)."""
    _check(x, kernel, x.shape[1])
    return _CausalFFTConv.apply(x, kernel, True)


class _CircularFilter(torch.autograd.Function):
    """``y = irfft(H rfft(x, ortho), n=T, ortho)`` over T of ``x: [B, T, D]``; ``H = h_re + i h_im: [D, T//2+1]``.

    Adjoint (with ``c_k = 1`` at DC and Nyquist, 2 elsewhere, the weights of the Hermitian half-spectrum that
    irfft sums): ``dL/dx = irfft(conj(H) rfft(g))``, ``dL/dH = sum_b c rfft(g) conj(X)``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, h_re: torch.Tensor, h_im: torch.Tensor) -> torch.Tensor:  # noqa: D401
        T = x.shape[1]
        work = accumulation_dtype(x.dtype)
        xt = x.transpose(1, 2).to(work).contiguous()  # FFT over the contiguous last axis
        xf = torch.fft.rfft(xt, norm="ortho")
        del xt
        h = torch.complex(h_re.to(work), h_im.to(work))
        need_grad = any(ctx.needs_input_grad)
        y = torch.fft.irfft(xf * h if need_grad else xf.mul_(h), n=T, norm="ortho")
        if need_grad:
            ctx.save_for_backward(xf, h)
        ctx.T, ctx.dtypes = T, (x.dtype, h_re.dtype, h_im.dtype)
        y = y.transpose(1, 2)  # a [B, T, D] view of the [B, D, T] result: the next matmul reads it as is
        return y if y.dtype == x.dtype else y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        xf, h = ctx.saved_tensors
        T = ctx.T
        work = xf.real.dtype
        # conj(G) in place, so no conjugate is materialised: G conj(X) = conj(conj(G) X) and
        # irfft(conj(H) G)[t] = irfft(H conj(G))[(-t) mod T] (a time reversal on the circle)
        gf = torch.fft.rfft(grad.transpose(1, 2).to(work).contiguous(), norm="ortho").conj_physical_()
        gx = g_re = g_im = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            cross = gf * xf  # = conj(G conj(X))
            cross = cross[0] if cross.shape[0] == 1 else cross.sum(0)
            cross[..., 1:] *= 2
            if T % 2 == 0:
                cross[..., -1] /= 2  # Nyquist bin counted once
            g_re, g_im = cross.real.to(ctx.dtypes[1]), (-cross.imag).to(ctx.dtypes[2])
        if ctx.needs_input_grad[0]:
            gx = _time_reversed(torch.fft.irfft(gf.mul_(h), n=T, norm="ortho"), T)  # [B, D, T]
            gx = gx.transpose(1, 2).contiguous().to(ctx.dtypes[0])
        return gx, g_re, g_im


def circular_filter_btd(x: torch.Tensor, h_re: torch.Tensor, h_im: torch.Tensor) -> torch.Tensor:
    """``irfft(H * rfft(x, dim=T, norm="ortho"), n=T, norm="ortho")`` for ``x: [B, T, D]``, ``H: [D, T//2+1]``."""
    n = x.shape[1] // 2 + 1
    if h_re.shape != (x.shape[2], n) or h_im.shape != h_re.shape:
        raise ValueError(f"filter must have shape [D, T//2+1] = {[x.shape[2], n]}, got {list(h_re.shape)}")
    return _CircularFilter.apply(x, h_re, h_im)
