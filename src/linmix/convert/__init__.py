"""Drop-in conversion of existing models: their attention layers become linmix mixers.

``model, report = linmix.convert(model, mixer="summation", keep=[-1])`` swaps every attention layer (but
the kept ones) of a ``torch.nn.TransformerEncoder``/``Decoder`` model, a Hugging Face GPT-2 or Llama model,
or a linmix model for the named mixer, initialised from the old weights where the mixer has the same pieces,
and reports what it did (:class:`ConversionReport`). See :func:`linmix.convert.core.convert`. With
``keep_teacher=True`` every replaced attention module stays beside its mixer, frozen, for
:mod:`linmix.distill` (:mod:`linmix.convert.teachers`).
"""
from linmix.convert.core import convert
from linmix.convert.report import ConversionReport, Replacement

__all__ = ["ConversionReport", "Replacement", "convert"]
