"""Tiny models for the distillation tests, built from config classes (no downloads) and seeded."""
from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

import linmix

VOCAB = 40


def _have_transformers_5() -> bool:
    if importlib.util.find_spec("transformers") is None:
        return False
    import transformers

    return int(transformers.__version__.split(".")[0]) >= 5


def tiny_gpt2(**overrides):
    """A two-layer GPT-2 from its config class (``initializer_range`` large enough for outputs of size ~1)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    values = dict(n_layer=2, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=32, attn_pdrop=0.0,
                  resid_pdrop=0.0, embd_pdrop=0.0, initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    values.update(overrides)
    torch.manual_seed(1)
    return GPT2LMHeadModel(GPT2Config(**values)).eval()


def tiny_lm(layers: str = "attention*3", **kw):
    """A linmix LM of softmax attention layers (seeded, so two calls build the same model)."""
    torch.manual_seed(2)
    return linmix.LanguageModel(VOCAB, d_model=32, layers=layers, max_len=32, n_heads=4, **kw).eval()


def converted(model, mixer: str = "linear_attention", **kw):
    """``(original copy, converted model with teachers kept)``."""
    original = copy.deepcopy(model)
    torch.manual_seed(3)
    model, _ = linmix.convert(model, mixer=mixer, keep_teacher=True, **kw)
    return original, model


def ids_batch(B: int = 4, T: int = 16, seed: int = 4) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


def make(family: str):
    """A fresh tiny model of ``family`` (``gpt2`` or ``linmix``)."""
    return tiny_gpt2() if family == "gpt2" else tiny_lm()


#: the model families every distillation test runs on (GPT-2 needs transformers 5, as linmix.convert does)
FAMILIES = [pytest.param("gpt2", marks=pytest.mark.skipif(not _have_transformers_5(), reason="needs transformers>=5")),
            "linmix"]
