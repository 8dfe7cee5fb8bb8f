"""Drop-in conversion of existing models: their attention layers become linmix mixers.

``model, report = linmix.convert(model, mixer="summation", keep=[-1])`` swaps every attention layer (but
the kept ones) of a ``torch.nn.TransformerEncoder``/``Decoder`` model, a Hugging Face GPT-2 or Llama model,
or a linmix model for the named mixer, initialised from the old weights where the mixer has the same pieces,
and reports what it did (:class:`ConversionReport`). See :func:`linmix.convert.core.convert`. With
``keep_teacher=True`` every replaced attention module stays beside its mixer, frozen, for
:mod:`linmix.distill` (:mod:`linmix.convert.teachers`). A converted Hugging Face GPT-2/Llama decodes from
its mixers' states with :func:`generate_streaming` (:mod:`linmix.convert.hf_decode`).
"""
from linmix.convert.core import convert
from linmix.convert.hf_decode import StreamingSession, generate_streaming, streaming_state_bytes
from linmix.convert.report import ConversionReport, Replacement

__all__ = ["ConversionReport", "Replacement", "StreamingSession", "convert", "generate_streaming",
           "streaming_state_bytes"]
