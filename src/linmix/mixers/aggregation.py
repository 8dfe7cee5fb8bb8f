"""Aggregation: a bias-free linear projection, then a causal prefix sum or a global sum.

A preset of :class:`linmix.mixers.summation.SumMixer` with no positional modulation and no nonlinearity::

    s[t] = sum_{i <= t} W x[i]   (causal)   or   sum_i W x[i]   (bidirectional)
    y[t] = s[t] / norm[t] + noise,   noise ~ N(0, noise_std^2) while training

O(T) time and memory through the same blockwise prefix sum; the streaming state is the running sum (O(D)).
Nothing in it depends on the position, so it is length-free: sequences and decoding positions past
``max_len`` are the same layer.
"""
from __future__ import annotations

from linmix.mixers.registry import register
from linmix.mixers.summation import SumMixer


@register("aggregation")
class AggregationMixer(SumMixer):
    """Bias-free projection (optional) -> prefix/global sum -> optional Gaussian noise while training."""

    test_grid = ({}, {"project": False, "normalize": "sqrt", "noise_std": 0.1})

    def __init__(self, d_model: int, max_len: int, causal: bool, project: bool = True, normalize: str = "count",
                 noise_std: float = 0.0) -> None:
        super().__init__(d_model, max_len, causal, depth=1 if project else 0, positional=False,
                         activation=False, normalize=normalize, out_proj=False, noise_std=noise_std)
