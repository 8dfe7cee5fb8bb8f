"""Numerical kernels shared by the mixers: prefix sums, FFT convolution and the fused summation layer.

Every fast path has a slow, obviously-correct reference beside it that the tests compare against.
"""
from linmix.ops.prefix_sum import prefix_sum, prefix_sum_reference, scan_
from linmix.ops.fftconv import (causal_conv_reference, causal_fft_conv, causal_fft_conv_btd,
                                circular_filter_btd)
from linmix.ops.sum_mix import sum_mix

__all__ = ["prefix_sum", "prefix_sum_reference", "scan_", "causal_fft_conv", "causal_fft_conv_btd",
           "causal_conv_reference", "circular_filter_btd", "sum_mix"]
