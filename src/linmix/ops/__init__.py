"""Numerical kernels shared by the mixers: prefix sums and FFT convolution, each with a slow reference."""
from linmix.ops.prefix_sum import prefix_sum, prefix_sum_reference
from linmix.ops.fftconv import causal_fft_conv, causal_conv_reference

__all__ = ["prefix_sum", "prefix_sum_reference", "causal_fft_conv", "causal_conv_reference"]
