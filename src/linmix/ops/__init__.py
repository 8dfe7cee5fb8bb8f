"""Numerical kernels shared by the mixers, one folder per kernel, each fast form beside its plain reference.

    prefix_sum/   scan.py (in-place chunked scan, autograd wrapper)   naive.py (float64 loop)
    fftconv/      fft.py (causal FFT long conv, circular filter)      naive.py (explicit [T, T] products)
                  online.py (exact streaming long conv, Flash Inference tiling: O(log^2 T) per token)
    sum_mix/      fused.py (the summation layer in one autograd fn)   naive.py (the composed formula)
    linear_attn/  chunked.py (chunked causal and global forms)        naive.py (explicit [T, T] kernel matrix)
    dtypes.py     accumulation_dtype: the precision every sum and FFT runs in
    rotary.py     rotary positions for queries and keys (relative scores, defined at every length)
    sinusoidal.py fixed sinusoidal positions, defined at every length

The functions below are re-exported here. Two of them share their folder's name (``prefix_sum``,
``sum_mix``), so ``linmix.ops.prefix_sum`` *as an attribute* is the function; import the modules with
``from linmix.ops.prefix_sum import scan`` (or ``from linmix.ops.prefix_sum.scan import ...``), which always
resolves the package.
"""
from linmix.ops.dtypes import accumulation_dtype
from linmix.ops.fftconv import (causal_conv_reference, causal_fft_conv, causal_fft_conv_btd, circular_filter_btd,
                                circular_filter_reference)
from linmix.ops.linear_attn import chunked_linear_attention, global_linear_attention, linear_attention_reference
from linmix.ops.prefix_sum import prefix_sum, prefix_sum_reference, scan_
from linmix.ops.sum_mix import sum_mix, sum_mix_reference

__all__ = ["accumulation_dtype", "prefix_sum", "prefix_sum_reference", "scan_", "causal_fft_conv",
           "causal_fft_conv_btd", "causal_conv_reference", "circular_filter_btd", "circular_filter_reference",
           "sum_mix", "sum_mix_reference", "chunked_linear_attention", "global_linear_attention",
           "linear_attention_reference"]
