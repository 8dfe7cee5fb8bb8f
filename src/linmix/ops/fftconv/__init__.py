"""Causal FFT long convolution and circular spectral filter (:mod:`.fft`); ``[T, T]`` references (:mod:`.naive`);
exact token-by-token decoding of the causal convolution (:mod:`.online`)."""
from linmix.ops.fftconv.fft import causal_fft_conv, causal_fft_conv_btd, channel_groups, circular_filter_btd
from linmix.ops.fftconv.naive import causal_conv_reference, circular_filter_reference
from linmix.ops.fftconv.online import OnlineConv

__all__ = ["causal_fft_conv", "causal_fft_conv_btd", "channel_groups", "circular_filter_btd",
           "causal_conv_reference", "circular_filter_reference", "OnlineConv"]
