"""Token-by-feature GEMMs for the fused summation layer, through oneDNN on the CPU where it is available.

``torch.nn.functional.linear`` sends float32 CPU matmuls to MKL's sgemm. For the ``[T, D] x [D, D]`` products
of a mixer (D = 256: a short inner dimension) oneDNN's kernel is faster on the CPU measured here (AMD EPYC
with AVX-512, 1-2 threads: about 3.4 ms against 3.8-4.8 ms per GEMM at T = 4096, 12 against 18 ms at
T = 16384; the whole summation layer 5-12% faster from T = 4096 up, slower below T ~ 1k, hence
:data:`MIN_ROWS`), and it computes the same float32 products (no reduced-precision mode; results agree with
MKL to float32 rounding). The long-reduction weight gradients (``g^T a`` over all tokens) stay on MKL,
which is faster there.

Used only for float32 tensors on the CPU; every other dtype or device, or a torch build without the oneDNN
op, goes through ``torch.nn.functional.linear`` (the first failure switches the fast path off for the
process). ``LINMIX_ONEDNN=0`` or :func:`set_onednn` turn it off by hand.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

_ENABLED = os.environ.get("LINMIX_ONEDNN", "1") not in ("0", "false", "False", "")
#: below this many rows (tokens) per GEMM oneDNN's per-call setup costs more than its faster kernel saves
MIN_ROWS = 2048


def set_onednn(enabled: bool) -> None:
    """Route float32 CPU GEMMs of the fused layers through oneDNN (True) or MKL via ``F.linear`` (False)."""
    global _ENABLED
    _ENABLED = bool(enabled)


def onednn_enabled() -> bool:
    return _ENABLED and hasattr(torch.ops, "mkldnn") and torch.backends.mkldnn.is_available()


def _onednn_ok(a: torch.Tensor, w: torch.Tensor) -> bool:
    return (_ENABLED and a.device.type == "cpu" and a.dtype == torch.float32 and w.dtype == torch.float32
            and a.is_contiguous() and a.numel() >= MIN_ROWS * a.shape[-1]
            and not (torch.is_grad_enabled() and (a.requires_grad or w.requires_grad)))


def linear(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``a @ w.T`` for ``a: [..., K]``, ``w: [N, K]``; not differentiable (for custom autograd functions)."""
    global _ENABLED
    if _onednn_ok(a, w):
        try:
            out = torch.ops.mkldnn._linear_pointwise(a.reshape(-1, a.shape[-1]), w.contiguous(), None, "none",
                                                      [], "")
            return out.view(*a.shape[:-1], w.shape[0])
        except (RuntimeError, AttributeError, NotImplementedError):  # op missing in this build: MKL from now on
            _ENABLED = False
    return F.linear(a, w)


def matmul(g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``g @ w`` for ``g: [..., N]``, ``w: [N, K]`` (a gradient through a linear layer)."""
    if _onednn_ok(g, w):
        return linear(g, w.t().contiguous())
    return g.matmul(w)
