"""Score linmix language models with the EleutherAI evaluation harness (``pip install 'linmix[eval]'``).

The harness's ``HFLM`` evaluates a transformers causal LM read through a transformers tokenizer. After
``import linmix.hf`` a linmix checkpoint folder loads as such a model, and
:func:`linmix.hf.transformers_tokenizer` turns the linmix tokenizer saved beside it into such a tokenizer,
so ``HFLM(pretrained=folder, tokenizer=transformers_tokenizer(tokenizer_folder))`` works as it does for
any Hugging Face model. :class:`LinmixLM` is that ``HFLM`` built from a run directory or checkpoint
folder alone, and importing this module registers it with the harness as the model ``"linmix"``::

    import lm_eval
    import linmix.harness

    results = lm_eval.simple_evaluate(model="linmix", model_args={"pretrained": "runs/char"},
                                      tasks=["lambada_openai"])

``python -m linmix.harness`` is the harness's own command line with that model available
(``python -m linmix.harness run --model linmix --model_args pretrained=runs/char --tasks lambada_openai``).

What scoring a linmix model involves:

* The context is the model's ``max_len`` (``config.max_position_embeddings``); the harness cuts longer
  inputs from the left (``max_length=`` sets another length, e.g. for a length-free model).
* Log-likelihood requests are batched with right padding, which no position of a causal model reads.
  Generation tasks (``generate_until``) need ``batch_size=1``: :class:`~linmix.hf.LinmixForCausalLM`
  reads unpadded batches only.
* A text scored from its start (rolling log-likelihoods, empty contexts) is conditioned on the
  end-of-text token, which for trained linmix vocabularies is the pad token (see
  :func:`~linmix.hf.transformers_tokenizer`; ``prefix_token_id=`` picks another).
"""
from __future__ import annotations

import os
from typing import Any

try:
    from lm_eval.api.registry import model_registry
    from lm_eval.models.huggingface import HFLM
except ImportError as err:  # pragma: no cover - exercised only without lm_eval
    raise ImportError("linmix.harness needs the evaluation harness; install it with "
                      "pip install 'linmix[eval]' (lm-eval and accelerate)") from err

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from linmix.hf import LinmixConfig, LinmixForCausalLM, transformers_tokenizer
from linmix.models.lm import LanguageModel
from linmix.train.sample import find_tokenizer_dir, resolve_model_dir

MODEL_NAME = "linmix"


class LinmixLM(HFLM):
    """The harness's ``HFLM`` for a linmix language model.

    ``pretrained`` is a run directory (its latest checkpoint is scored), a checkpoint folder, a
    :class:`~linmix.LanguageModel` or a :class:`~linmix.hf.LinmixForCausalLM`. ``tokenizer`` is a linmix
    tokenizer, a folder one was saved to, or a transformers tokenizer; by default the linmix tokenizer
    saved beside the checkpoint (or in its run directory). Every other keyword is ``HFLM``'s
    (``batch_size``, ``device``, ``dtype``, ``max_length``, ``prefix_token_id``, ...).
    """

    def __init__(self, pretrained: str | os.PathLike | LanguageModel | PreTrainedModel,
                 tokenizer: Any = None, **kwargs: Any) -> None:
        if isinstance(pretrained, LanguageModel):
            pretrained = LinmixForCausalLM(LinmixConfig.from_model_config(pretrained.config), model=pretrained)
        if isinstance(pretrained, (str, os.PathLike)):
            model_dir = resolve_model_dir(pretrained)
            if tokenizer is None:
                tokenizer = find_tokenizer_dir(model_dir)
            pretrained = str(model_dir)
        elif tokenizer is None:
            raise ValueError("a model passed as an object needs tokenizer= (a linmix tokenizer or its folder)")
        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            tokenizer = transformers_tokenizer(tokenizer)
        kwargs.setdefault("backend", "causal")
        super().__init__(pretrained=pretrained, tokenizer=tokenizer, **kwargs)


# registered by import path: running this file as ``python -m linmix.harness`` defines the class twice
# (as __main__ and as linmix.harness), and the harness refuses two classes under one name
model_registry.register(MODEL_NAME, target="linmix.harness:LinmixLM")


def main() -> None:
    """The harness's command line (``lm-eval``) with linmix checkpoints loadable (``--model linmix``)."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


__all__ = ["MODEL_NAME", "LinmixLM", "main"]

if __name__ == "__main__":
    main()
