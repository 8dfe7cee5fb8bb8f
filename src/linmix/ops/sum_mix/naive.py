"""The summation layer as the plain composed formula, with the sum over tokens as an explicit ``[T, T]`` product.

Differentiated by ordinary autograd and computed in the inputs' dtype (the tests use float64): the reference
:func:`linmix.ops.sum_mix.fused.sum_mix` is held equal to, forward and every gradient.
"""
from __future__ import annotations

import torch


def sum_mix_reference(x: torch.Tensor, pos: torch.Tensor | None, count: torch.Tensor | None,
                      w_out: torch.Tensor | None, weights: list[torch.Tensor], pos_bias: float, activation: bool,
                      causal: bool) -> torch.Tensor:
    """Same arguments and result as :func:`~linmix.ops.sum_mix.fused.sum_mix`, step by step::

        u = x * (pos[:T] + pos_bias)        h = act(W_k ... act(W_1 u))
        s = M h / count                     y = W_o s
    with ``M`` the ``[T, T]`` lower-triangular ones (causal) or all ones (global), ``act`` relu or identity.
    """
    T = x.shape[1]
    h = x * (pos[:T] + pos_bias) if pos is not None else x
    for w in weights:
        h = h @ w.T
        if activation:
            h = torch.relu(h)
    ones = torch.ones(T, T, dtype=h.dtype, device=h.device)
    s = torch.einsum("ts,bsd->btd", torch.tril(ones) if causal else ones, h)
    if count is not None:
        s = s / count
    return s @ w_out.T if w_out is not None else s
