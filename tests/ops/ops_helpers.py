"""One comparison for every kernel: fast form against its naive reference, forward and backward."""
from __future__ import annotations

from typing import Callable, Sequence

import torch


def assert_rel_close(a: torch.Tensor, b: torch.Tensor, tol: float, measure: str = "max") -> None:
    """``|a - b| <= tol * |b|`` in the max norm (or the Frobenius norm, ``measure="norm"``).

    The error measure for low precision, where entries near 0 have no digits; the Frobenius form also
    tolerates the few entries where a ReLU mask computed in bf16 flips.
    """
    a, b = a.double(), b.double()
    size = (lambda t: t.abs().max().item()) if measure == "max" else (lambda t: t.norm().item())
    err, scale = size(a - b), size(b)
    assert err <= tol * max(scale, 1e-30), f"{measure} error {err:.3g} exceeds {tol} x |ref| = {tol * scale:.3g}"


def assert_matches_reference(fast: Callable[..., torch.Tensor], ref: Callable[..., torch.Tensor],
                             inputs: Sequence[torch.Tensor], tol: float | None = None) -> None:
    """``fast(*inputs) == ref(*inputs)`` and equal gradients for every input that requires grad.

    The reference runs in float64 on copies of the inputs; with ``tol=None`` (float64 inputs) the comparison is
    ``torch.testing.assert_close``, else :func:`assert_rel_close`. The fast backward runs twice
    (``retain_graph``): in-place work in backward must leave the saved tensors intact. Gradients keep each
    input's dtype.
    """
    inputs = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    wide = [t.detach().double().requires_grad_(t.requires_grad) for t in inputs]
    y, y_ref = fast(*inputs), ref(*wide)
    check = torch.testing.assert_close if tol is None else (lambda a, b: assert_rel_close(a, b, tol))
    check(y, y_ref)
    g = torch.randn_like(y_ref)
    diff = [t for t in inputs if t.requires_grad]
    want = torch.autograd.grad(y_ref, [t for t in wide if t.requires_grad], g)
    for retain in (True, False):
        got = torch.autograd.grad(y, diff, g.to(y.dtype), retain_graph=retain, allow_unused=True)
        for t, a, b in zip(diff, got, want):
            a = torch.zeros_like(t) if a is None else a
            assert a.dtype == t.dtype
            check(a, b)
