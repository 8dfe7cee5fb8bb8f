"""Linear attention kernels: chunked causal and global (:mod:`.chunked`), the ``[T, T]`` reference (:mod:`.naive`)."""
from linmix.ops.linear_attn.chunked import chunked_linear_attention, global_linear_attention
from linmix.ops.linear_attn.naive import linear_attention_reference

__all__ = ["chunked_linear_attention", "global_linear_attention", "linear_attention_reference"]
