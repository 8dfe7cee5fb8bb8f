"""Causal prefix sum over time: the in-place chunked scan (:mod:`.scan`) and its float64 loop (:mod:`.naive`)."""
from linmix.ops.prefix_sum.naive import prefix_sum_reference
from linmix.ops.prefix_sum.scan import prefix_sum, scan_, scan_chunk

__all__ = ["prefix_sum", "prefix_sum_reference", "scan_", "scan_chunk"]
