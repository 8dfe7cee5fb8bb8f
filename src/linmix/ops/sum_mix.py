"""The whole summation layer as one autograd function that saves only what backward cannot rebuild cheaply.

Computes, for ``x: [B, T, D]`` (the formula of :class:`linmix.mixers.summation.SumMixer`)::

    u = x * (p + pos_bias)                       # p = P[offset:offset+T]; skipped when p is None
    h = act(W_k ... act(W_1 u))                  # bias-free, act = relu or identity
    s = prefix_sum(h) / c   (causal)   or   sum_t(h) / c   (global: [B, 1, D])
    y = W_o s                                    # skipped when W_o is None

Forward allocates one activation-sized tensor per step and works in place after that (the ReLU, the scan
and the normalisation run on the matmul output). Saved for backward: the input ``x`` (already alive), a
bool "dead ReLU" mask per activated layer (1 byte per element), the hidden input of a second layer (only
for depth 2) and ``s`` (needed for ``dW_o``; not saved without ``W_o``). ``u`` is recomputed in backward (one
multiply). The backward is the textbook chain, with the suffix sum done in place on ``dL/ds``.

Precision: matmuls run in ``mm_dtype`` (the autocast dtype under autocast, else the input dtype); the sum
is accumulated in float32 (float64 for float64) and the normalisation applied there, before the cast for
``W_o``. Gradients are returned in each input's own dtype.

The plain composition (``features -> prefix_sum -> finish``) stays in :mod:`linmix.mixers.summation` as the
reference; the equivalence tests compare the two in float64, forward and every gradient.
"""
from __future__ import annotations

import torch

from linmix.ops.prefix_sum import scan_, work_dtype


def _mm(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``a @ w.T`` for ``a: [B, T, D_in]``, ``w: [D_out, D_in]``."""
    return torch.nn.functional.linear(a, w)


def _grad_weight(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``sum_{b,t} g[b,t]^T a[b,t]`` -> ``[D_out, D_in]`` (one GEMM over the flattened tokens)."""
    return g.reshape(-1, g.shape[-1]).t().mm(a.reshape(-1, a.shape[-1]))


class SumMix(torch.autograd.Function):
    """See the module docstring. Inputs: ``x, p, count, W_o, *Ws``; static: ``pos_bias, act, causal``."""

    @staticmethod
    def forward(ctx, x, p, count, w_out, pos_bias, activation, causal, mm_dtype, *weights):  # noqa: D401
        work = work_dtype(mm_dtype)
        u = x * (p.to(x.dtype) + pos_bias) if p is not None else x
        h = u.to(mm_dtype)
        hidden_in, dead = [], []
        for i, w in enumerate(weights):
            hidden_in.append(None if i == 0 else h)
            h = _mm(h, w.to(mm_dtype))
            if activation:
                dead.append(h <= 0)
                h.relu_()
        if causal:
            s = h.to(work, copy=h is x or h.dtype != work or not h.is_contiguous()).contiguous()
            s = scan_(s)
        else:
            s = h.sum(1, keepdim=True, dtype=work)
        if count is not None:
            s.div_(count.to(work))
        y = _mm(s.to(mm_dtype), w_out.to(mm_dtype)) if w_out is not None else s
        y = y.to(mm_dtype)
        ctx.pos_bias, ctx.causal, ctx.mm_dtype, ctx.n_layers = pos_bias, causal, mm_dtype, len(weights)
        ctx.has_p, ctx.has_out, ctx.has_count = p is not None, w_out is not None, count is not None
        ctx.activation = activation
        saved_hidden = [t for t in hidden_in[1:]]  # inputs of layers 2.. (depth 2 only)
        ctx.save_for_backward(x, p, count, w_out, s if w_out is not None else None, *weights, *dead, *saved_hidden)
        if not causal:
            y = y.expand(-1, x.shape[1], -1)
        return y

    @staticmethod
    def backward(ctx, gy):
        with torch.autocast(gy.device.type, enabled=False):  # every cast below is explicit
            return SumMix._backward(ctx, gy)

    @staticmethod
    def _backward(ctx, gy):
        n = ctx.n_layers
        saved = ctx.saved_tensors
        x, p, count, w_out, s = saved[:5]
        weights = saved[5:5 + n]
        dead = saved[5 + n:5 + n + (n if ctx.activation else 0)]
        hidden = saved[5 + n + len(dead):]
        mm_dtype = ctx.mm_dtype
        work = work_dtype(mm_dtype)
        T = x.shape[1]
        gy = gy.to(mm_dtype)
        if not ctx.causal:
            gy = gy.sum(1, keepdim=True, dtype=work).to(mm_dtype)
        g_out = None
        if w_out is not None:
            g_out = _grad_weight(gy, s.to(mm_dtype)).to(w_out.dtype)
            gs = gy.matmul(w_out.to(mm_dtype)).to(work)
        else:
            gs = gy.to(work, copy=True)
        if count is not None:
            gs.div_(count.to(work))
        if ctx.causal:
            gh = scan_(gs.contiguous(), reverse=True)
        else:
            gh = gs.expand(-1, T, -1)
        gh = gh.to(mm_dtype)
        g_weights = [None] * n
        for i in range(n - 1, -1, -1):
            if ctx.activation:
                if gh.stride(1) == 0:  # the global form's broadcast gradient: materialise while masking
                    gh = gh.masked_fill(dead[i], 0)
                else:
                    gh.masked_fill_(dead[i], 0)
            if i == 0:
                inp = x * (p.to(x.dtype) + ctx.pos_bias) if p is not None else x
            else:
                inp = hidden[i - 1]
            g_weights[i] = _grad_weight(gh, inp.to(mm_dtype)).to(weights[i].dtype)
            del inp
            gh = gh.matmul(weights[i].to(mm_dtype))
        gx = gh
        g_p = None
        if p is not None:
            if ctx.needs_input_grad[1]:
                prod = gx * x.to(gx.dtype)
                g_p = (prod[0] if prod.shape[0] == 1 else prod.sum(0)).to(p.dtype)
                del prod
            scale = p.to(gx.dtype) + ctx.pos_bias
            gx = gx.mul_(scale) if gx.is_contiguous() else gx * scale
        gx = gx.to(x.dtype) if gx.dtype != x.dtype else gx
        if gx.stride(1) == 0:
            gx = gx.contiguous()
        return (gx, g_p, None, g_out, None, None, None, None, *g_weights)


def sum_mix(x: torch.Tensor, p: torch.Tensor | None, count: torch.Tensor | None, w_out: torch.Tensor | None,
            weights: list[torch.Tensor], pos_bias: float, activation: bool, causal: bool) -> torch.Tensor:
    """The summation layer in one fused autograd function (see the module docstring).

    ``p``: the positional rows ``[T, D]`` (None: no modulation); ``count``: the divisor broadcastable to
    ``[B, T, 1]`` (causal) or ``[B, 1, 1]`` (global), None for no normalisation. Under autocast the matmuls run
    in the autocast dtype and the sums in float32.
    """
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        mm_dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            return SumMix.apply(x, p, count, w_out, pos_bias, activation, causal, mm_dtype, *weights)
    return SumMix.apply(x, p, count, w_out, pos_bias, activation, causal, x.dtype, *weights)
