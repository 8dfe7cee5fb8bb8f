"""The summation layer in one fused autograd function (:mod:`.fused`) and as its composed formula (:mod:`.naive`)."""
from linmix.ops.sum_mix.fused import sum_mix
from linmix.ops.sum_mix.naive import sum_mix_reference

__all__ = ["sum_mix", "sum_mix_reference"]
