"""The whole summation layer as one autograd function: few temporaries, in-place where it is safe.

Computes, for ``x: [B, T, D]`` (the formula of :class:`linmix.mixers.summation.SumMixer`)::

    u = x * (P[:T] + pos_bias)                   # skipped when P is None
    h = act(W_k ... act(W_1 u))                  # bias-free, act = relu or identity
    s = prefix_sum(h) / c   (causal)   or   sum_t(h) / c   (global: [B, 1, D], broadcast over T)
    y = W_o s                                    # skipped when W_o is None

Why a fused function: on a CPU the layer's cost beyond its matmuls is memory traffic and, above all, fresh
activation-sized allocations (page faults). Autograd's composition allocates a new tensor per step and
saves several; here the ReLU, the scan, the normalisation, the ReLU mask in backward and the final scaling
of ``dL/dx`` all run in place on a tensor the function owns, ``P[:T] + pos_bias`` is rebuilt in a buffer that
is free by then, and the positional gradient is written straight into its full-size tensor.

Saved for backward: ``u`` (the first matmul's input; ``x`` itself when there is no modulation), a 1-byte
"ReLU passed" mask per activated layer, the inputs of deeper layers (depth 2) and ``s`` (for ``dW_o``).

Precision: matmuls run in ``mm_dtype`` (the autocast dtype under autocast, else the input dtype); the sum is
accumulated in float32 (float64 for float64) and normalised there before the cast for ``W_o``. Gradients are
returned in each input's own dtype.

The composed formula, with an explicit ``[T, T]`` sum, is :func:`linmix.ops.sum_mix.naive.sum_mix_reference`;
the tests hold the two equal in float64, forward and every gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from linmix.ops.dtypes import accumulation_dtype
from linmix.ops.prefix_sum.scan import scan_
from linmix.ops.sum_mix import gemm


def _grad_weight(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``sum_{b,t} g[b,t]^T a[b,t]`` -> ``[D_out, D_in]`` (one GEMM over the flattened tokens)."""
    return g.reshape(-1, g.shape[-1]).t().mm(a.reshape(-1, a.shape[-1]))


def modulate(x: torch.Tensor, p: torch.Tensor, pos_bias: float) -> torch.Tensor:
    """``x * (p + pos_bias)`` bit for bit, with a single activation-sized allocation."""
    p = p.to(x.dtype)
    B = x.shape[0]
    if B == 1:
        return torch.add(p, pos_bias).mul_(x[0]).unsqueeze(0)
    u = torch.empty_like(x, memory_format=torch.contiguous_format)
    pb = torch.add(p, pos_bias, out=u[0])
    torch.mul(x[1:], pb, out=u[1:])
    pb.mul_(x[0])
    return u


class SumMix(torch.autograd.Function):
    """See the module docstring. ``pos`` is the full positional table; rows ``[:T]`` are used."""

    @staticmethod
    def forward(ctx, x, pos, count, w_out, pos_bias, activation, causal, mm_dtype, *weights):  # noqa: D401
        T = x.shape[1]
        work = accumulation_dtype(mm_dtype)
        u = modulate(x, pos[:T], pos_bias) if pos is not None else x
        h = u.to(mm_dtype)
        del u
        inputs = []
        for w in weights:
            inputs.append(h)
            h = gemm.linear(h, w.to(mm_dtype))
            if activation:
                h.relu_()
        last, alive, s_small = None, None, None
        if causal:
            if w_out is not None:
                # W_o commutes with the scan and the per-row division: y = scan(h W_o^T) / c. The scan then
                # runs in place on the fresh matmul output and h survives intact for backward.
                last = h
                z = gemm.linear(h, w_out.to(mm_dtype))
                s = z if z.dtype == work else z.to(work)
            else:
                owned = len(weights) > 0 or pos is not None
                if activation and weights:
                    alive = h.bool()  # h is about to be scanned in place: keep where the ReLU passed
                s = h if (owned and h.dtype == work and h.is_contiguous()) else h.to(work, copy=True)
            s = scan_(s.contiguous())
            if count is not None:
                s.div_(count.to(work))
            y = s.to(mm_dtype)
        else:
            if activation and weights:
                last = h
            s = h.sum(1, keepdim=True, dtype=work)
            if count is not None:
                s.div_(count.to(work))
            s_small = s if w_out is not None else None
            y = F.linear(s.to(mm_dtype), w_out.to(mm_dtype)) if w_out is not None else s.to(mm_dtype)
            y = y.expand(-1, T, -1)
        del h, s
        ctx.pos_bias, ctx.causal, ctx.mm_dtype, ctx.n_layers = pos_bias, causal, mm_dtype, len(weights)
        ctx.activation, ctx.T, ctx.x_dtype = activation, T, x.dtype
        ctx.save_for_backward(x if pos is not None else None, pos, count, w_out, last, alive, s_small,
                              *weights, *inputs)
        return y

    @staticmethod
    def backward(ctx, gy):
        with torch.autocast(gy.device.type, enabled=False):  # every cast below is explicit
            return SumMix._backward(ctx, gy)

    @staticmethod
    def _backward(ctx, gy):
        n, T, mm_dtype = ctx.n_layers, ctx.T, ctx.mm_dtype
        saved = ctx.saved_tensors
        x, pos, count, w_out, last, alive, s_small = saved[:7]
        weights, inputs = saved[7:7 + n], saved[7 + n:]
        work = accumulation_dtype(mm_dtype)
        need_x, need_pos = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        g_out = None
        spares = []  # activation-sized buffers that are free again (reused for dL/dP and P + pos_bias)
        if ctx.causal:
            g = gy.to(work)
            if count is not None:
                r = torch.div(g, count.to(work))
            else:
                r = g.clone(memory_format=torch.contiguous_format)
            r = scan_(r.contiguous(), reverse=True).to(mm_dtype)  # dL/dz = suffix sum of dL/dy / c
            if w_out is not None:
                if ctx.needs_input_grad[3]:
                    g_out = _grad_weight(r, last).to(w_out.dtype)
                gh = gemm.matmul(r, w_out.to(mm_dtype))
                spares.append(r)
            else:
                gh = r
        else:
            g1 = gy.sum(1, keepdim=True, dtype=work)
            if w_out is not None:
                if ctx.needs_input_grad[3]:
                    g_out = _grad_weight(g1, s_small).to(w_out.dtype)
                g1 = g1.to(mm_dtype).matmul(w_out.to(mm_dtype)).to(work)
            if count is not None:
                g1 = g1 / count.to(work)
            gh = g1.to(mm_dtype).expand(-1, T, -1)
        del gy

        g_weights = [None] * n
        for i in range(n - 1, -1, -1):
            if ctx.activation:
                out_i = inputs[i + 1] if i + 1 < n else last  # the layer's post-ReLU output
                if out_i is None:  # scanned in place in forward: use the saved mask
                    gh.mul_(alive.view(torch.uint8))
                elif gh.stride(1) == 0:
                    gh = torch.ops.aten.threshold_backward(gh, out_i, 0.0)
                else:
                    torch.ops.aten.threshold_backward.grad_input(gh, out_i, 0.0, grad_input=gh)
            if ctx.needs_input_grad[8 + i]:
                g_weights[i] = _grad_weight(gh, inputs[i]).to(weights[i].dtype)
            if i > 0 or need_x or need_pos:
                nxt = gemm.matmul(gh, weights[i].to(mm_dtype))
                if gh.stride(1) != 0:
                    spares.append(gh)
                gh = nxt
            else:
                gh = None
        if gh is None:
            return (None, None, None, g_out, None, None, None, None, *g_weights)
        gx = gh.to(ctx.x_dtype)  # dL/du (or dL/dx without modulation), [B, T, D], in x's dtype
        spares = [b for b in spares if b.shape == gx.shape and b.dtype == gx.dtype and b.is_contiguous()]
        g_pos = None
        if pos is not None:
            if need_pos:
                g_pos = _positional_grad(gx, x, pos, T, spares)
            if need_x:
                p = pos[:T].to(gx.dtype)
                pb = torch.add(p, ctx.pos_bias, out=spares.pop()[0]) if spares else p + ctx.pos_bias
                gx = gx.mul_(pb) if gx.stride(1) != 0 else gx * pb
            else:
                gx = None
        if gx is not None and gx.stride(1) == 0:
            gx = gx.contiguous()
        return (gx, g_pos, None, g_out, None, None, None, None, *g_weights)


def _positional_grad(gu: torch.Tensor, x: torch.Tensor, pos: torch.Tensor, T: int,
                     spares: list[torch.Tensor]) -> torch.Tensor:
    """``dL/dP = sum_b dL/du * x`` on rows ``[:T]`` of a full-size table gradient (zeros below).

    With one sequence and ``T = max_len`` the result is written into a free buffer from ``spares`` (taken
    from the list), which saves a fresh activation-sized allocation.
    """
    L = pos.shape[0]
    gu, xs = gu.to(pos.dtype), x.to(pos.dtype)
    if gu.shape[0] == 1:
        if L == T and spares and spares[-1].dtype == pos.dtype:
            full = spares.pop()[0]
        else:
            full = torch.empty_like(pos) if L == T else torch.zeros_like(pos)
        torch.mul(gu[0], xs[0], out=full[:T])
    else:
        prod = torch.mul(gu, xs, out=spares.pop()) if spares and spares[-1].dtype == pos.dtype else gu * xs
        full = torch.zeros_like(pos) if L != T else torch.empty_like(pos)
        torch.sum(prod, 0, out=full[:T])
    return full


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The active autocast dtype for ``device_type``, or None when autocast is off there."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
        return None
    except TypeError:  # torch < 2.4: per-device getters without arguments
        if device_type == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        if device_type == "cpu" and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
        return None


def sum_mix(x: torch.Tensor, pos: torch.Tensor | None, count: torch.Tensor | None, w_out: torch.Tensor | None,
            weights: list[torch.Tensor], pos_bias: float, activation: bool, causal: bool) -> torch.Tensor:
    """The summation layer in one fused autograd function (see the module docstring).

    ``pos``: the full positional table ``[max_len, D]`` (rows ``[:T]`` are used; None: no modulation);
    ``count``: the divisor, broadcastable to ``[B, T, 1]`` (causal) or ``[B, 1, 1]`` (global), None for none.
    Under autocast the matmuls run in the autocast dtype and the sums in float32.
    """
    device_type = x.device.type
    mm_dtype = autocast_dtype(device_type)
    if mm_dtype is not None:
        with torch.autocast(device_type, enabled=False):
            return SumMix.apply(x, pos, count, w_out, pos_bias, activation, causal, mm_dtype, *weights)
    return SumMix.apply(x, pos, count, w_out, pos_bias, activation, causal, x.dtype, *weights)
