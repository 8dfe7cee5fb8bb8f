"""Optional transformers integration: ``import linmix.hf`` registers linmix language models with
``AutoConfig`` (model_type ``"linmix_lm"``) and ``AutoModelForCausalLM``.

A folder written by :meth:`linmix.LanguageModel.save_pretrained` (its ``config.json`` carries
``model_type = "linmix_lm"``) then loads with ``transformers.AutoModelForCausalLM.from_pretrained(path)``
as a :class:`LinmixForCausalLM`: a ``PreTrainedModel`` + ``GenerationMixin`` around the linmix model, so
``generate``, pipelines and ``Trainer`` work with it.

Loading and saving go through linmix's own strict loader and writer (:mod:`linmix.models.pretrained`):
the folder format is linmix's (safetensors + config.json of ModelConfig fields), tied weights are tied by
the model itself, and a folder saved from either side loads in the other. ``from_pretrained`` reads local
folders only (fetch a Hub repository first, e.g. with ``huggingface_hub.snapshot_download``).

:func:`transformers_tokenizer` gives a ``PreTrainedTokenizerFast`` that encodes exactly as a linmix tokenizer
does, for tools that take a transformers tokenizer (pipelines, the EleutherAI evaluation harness: see
:mod:`linmix.harness`).

Generation runs without a transformers KV cache: each step runs the whole prefix through the model
(``use_cache`` is False in the config). That is correct for every mixer and costs O(T) forwards per
token; linmix's own :meth:`~linmix.LanguageModel.generate` streams with each mixer's state instead, and
greedy decoding gives the same tokens either way.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tokenizers import Regex, decoders, normalizers, pre_tokenizers
from tokenizers import Tokenizer as TokenizerObject
from tokenizers import models as tokenizer_models

try:
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        GenerationMixin,
        PretrainedConfig,
        PreTrainedModel,
        PreTrainedTokenizerFast,
    )
    from transformers.modeling_outputs import CausalLMOutputWithPast
except ImportError as err:  # pragma: no cover - exercised only without transformers
    raise ImportError("linmix.hf needs transformers; install it with pip install 'linmix[hf]'") from err

from linmix.config import ModelConfig
from linmix.data.bpe import BPETokenizer, HubTokenizer
from linmix.data.tokenizers import UNK, CharTokenizer, Tokenizer, WordTokenizer, load_tokenizer
from linmix.models.lm import LanguageModel

MODEL_TYPE = LanguageModel.saved_model_type
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))


class LinmixConfig(PretrainedConfig):
    """transformers config of a linmix language model: the fields of :class:`~linmix.config.ModelConfig`.

    ``tie_word_embeddings`` follows ``tie_weights``; ``use_cache`` is False (see the module docstring).
    ``max_position_embeddings`` reads ``max_len``, the context length tools such as the evaluation harness
    look for (a hard bound unless the model is length-free).
    """

    model_type = MODEL_TYPE
    attribute_map = {"max_position_embeddings": "max_len"}
    head: str = "lm"
    layers: str | None = None
    d_model: int | None = None
    n_heads: int = 4
    max_len: int | None = None
    positional: str = "learned"
    norm: str = "pre"
    ffn_mult: int = 4
    dropout: float = 0.0
    arch: str = "block"
    pooling: str = "mean"
    fusion: str = "add"
    tie_weights: bool = True
    causal: bool = True
    vocab_size: int | None = None
    num_classes: int | None = None
    n_numeric: int | None = None
    mixer_options: dict | None = None
    tie_word_embeddings: bool = True
    use_cache: bool = False

    def model_config(self) -> ModelConfig:
        """The linmix :class:`ModelConfig` these fields describe (resolved; a bad field is a ValueError)."""
        values = {name: getattr(self, name) for name in MODEL_FIELDS}
        values["mixer_options"] = dict(values["mixer_options"] or {})
        if values["head"] != "lm":
            raise ValueError(f"a {MODEL_TYPE} config describes a language model, got head={values['head']!r}")
        return ModelConfig(**values).resolved()

    @classmethod
    def from_model_config(cls, config: ModelConfig) -> LinmixConfig:
        """The transformers config of a linmix language model's ``config``."""
        values = dataclasses.asdict(config)
        return cls(**values, tie_word_embeddings=bool(config.tie_weights), architectures=["LinmixForCausalLM"])


class LinmixForCausalLM(PreTrainedModel, GenerationMixin):
    """A linmix :class:`~linmix.LanguageModel` (``self.model``) as a transformers causal LM.

    ``forward(input_ids, attention_mask=None, labels=None)`` returns ``CausalLMOutputWithPast`` with the
    logits (and the shifted cross-entropy ``loss`` when ``labels`` are given, ``-100`` ignored). A padded
    ``attention_mask`` is refused: the linmix LM reads unpadded batches. See the module docstring for
    loading, saving and generation (no KV cache: the whole prefix every step).
    """

    config_class = LinmixConfig
    base_model_prefix = "model"
    # the linmix model ties these itself; declared so transformers' tie_weights() keeps them tied
    # (only when config.tie_word_embeddings, i.e. tie_weights, is True)
    _tied_weights_keys = {"model.head.weight": "model.encoder.embed.weight"}
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False

    def __init__(self, config: LinmixConfig, model: LanguageModel | None = None) -> None:
        super().__init__(config)
        config.tie_word_embeddings = bool(config.tie_weights)
        self.model = model if model is not None else LanguageModel.from_config(config.model_config())
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Nothing: linmix modules initialise themselves when built (and loading overwrites them)."""

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.encoder.embed

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.model.head

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs: Any) -> CausalLMOutputWithPast:
        if input_ids is None:
            raise ValueError("LinmixForCausalLM takes input_ids (inputs_embeds are not supported)")
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise ValueError("LinmixForCausalLM reads unpadded batches; pass sequences of equal length without "
                             "padding (or one sequence at a time)")
        logits = self.model(input_ids)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                                      **kwargs: Any) -> dict[str, Any]:
        """The whole prefix each step (no cache)."""
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        """False: ``generate`` builds no transformers cache, even when a caller passes ``use_cache=True``
        (the evaluation harness does)."""
        return False

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Write the folder with linmix's writer (safetensors + config.json), loadable from either side."""
        self.model.save_pretrained(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any,
                        config: LinmixConfig | None = None, **kwargs: Any) -> LinmixForCausalLM:
        """Load a folder written by ``save_pretrained`` (either side) with linmix's strict loader.

        ``dtype`` (or ``torch_dtype``), ``subfolder`` and a single-device ``device_map`` (a device, or
        ``{"": device}``) are honoured; the Hub arguments transformers passes along (revision, cache_dir,
        ...) do not apply to a local folder.
        """
        path = Path(pretrained_model_name_or_path) / (kwargs.get("subfolder") or "")
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a local folder; linmix.hf loads folders written by "
                                    "save_pretrained (download a Hub repository first, e.g. "
                                    "huggingface_hub.snapshot_download)")
        lm = LanguageModel.from_pretrained(path)
        model = cls(LinmixConfig.from_model_config(lm.config), model=lm)
        dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
        if dtype is not None and dtype != "auto":
            model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        device = kwargs.get("device_map")
        if isinstance(device, dict) and set(device) == {""}:  # the whole model on one device
            device = device[""]
        if isinstance(device, int):
            device = torch.device("cuda", device)
        if isinstance(device, (str, torch.device)) and device != "auto":
            model.to(device)
        return model.eval()


#: end-of-text tokens a pretrained (hub) tokenizer may have, in the order they are looked for
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>")


def transformers_tokenizer(tokenizer: Tokenizer | str | os.PathLike, eos_token: str | None = None
                           ) -> PreTrainedTokenizerFast:
    """A transformers ``PreTrainedTokenizerFast`` giving the ids of a linmix tokenizer's ``encode``.

    ``tokenizer`` is a linmix :class:`~linmix.data.tokenizers.Tokenizer` or a folder one was saved to.
    Tools built on transformers tokenizers (pipelines, the evaluation harness) then feed a linmix model
    the ids it was trained on:

    * char: one token per character over the same vocabulary (unseen characters are ``<unk>``);
    * word: the same ``<br />`` removal, lower-casing and word/punctuation split as
      :meth:`~linmix.data.tokenizers.WordTokenizer.tokenize` (Python's and the Rust regex engine's
      notion of a word character may differ on rare Unicode characters);
    * bpe / hf: a copy of the Hugging Face tokenizer without its post-processor, since linmix encodes
      without special tokens (``add_special_tokens`` adds nothing either way).

    The pad token is the linmix one (``<pad>``; a hub tokenizer's own, or none when it has none). Text
    that spells a special token (``"<pad>"``) is read as characters or words, as linmix reads it; with
    bpe / hf tokenizers linmix and transformers alike match the tokenizer's added tokens in text.

    ``eos_token``: the evaluation harness prefixes an end-of-text token when it scores a text from its
    start (rolling log-likelihoods, empty contexts) and stops generation at it. Trained linmix
    vocabularies have none, so the pad token stands in unless ``eos_token`` names another; a hub
    tokenizer uses its own end-of-text token when it has one (:data:`EOS_CANDIDATES`), else its pad token.
    """
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer)
    kind = type(tok)  # exact classes: a subclass may encode differently
    if kind not in (CharTokenizer, WordTokenizer, BPETokenizer, HubTokenizer):
        raise TypeError(f"no transformers form for {kind.__name__}; known: char, word, bpe and hub tokenizers")
    pad = tok.itos[tok.pad_id] if kind in (CharTokenizer, WordTokenizer) else tok.pad_token  # type: ignore
    if kind is CharTokenizer:
        backend = TokenizerObject(tokenizer_models.BPE(vocab=dict(tok.stoi), merges=[], unk_token=UNK))
        backend.decoder = decoders.Sequence([decoders.Replace(UNK, CharTokenizer.UNK_CHAR), decoders.Fuse()])
    elif kind is WordTokenizer:
        backend = TokenizerObject(tokenizer_models.WordLevel(vocab=dict(tok.stoi), unk_token=UNK))
        line_break = Regex("(?i)" + WordTokenizer._BR.pattern)  # linmix drops <br /> before lower-casing
        backend.normalizer = normalizers.Sequence([normalizers.Replace(line_break, " "), normalizers.Lowercase()])
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(WordTokenizer._TOKEN.pattern), behavior="removed",
                                                     invert=True)
    else:
        backend = TokenizerObject.from_str(tok.hf.to_str())  # type: ignore[attr-defined]
        backend.post_processor = None
        backend.no_padding()
        backend.no_truncation()
        if eos_token is None and kind is HubTokenizer:
            eos_token = next((t for t in EOS_CANDIDATES if backend.token_to_id(t) is not None), None)
    if eos_token is not None and backend.token_to_id(eos_token) is None:
        raise ValueError(f"eos_token {eos_token!r} is not in the tokenizer's vocabulary")
    vocab_owned = kind in (CharTokenizer, WordTokenizer)  # no added tokens: specials in text are text
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=pad, eos_token=eos_token or pad,
                                   split_special_tokens=vocab_owned, clean_up_tokenization_spaces=False)


AutoConfig.register(MODEL_TYPE, LinmixConfig, exist_ok=True)
AutoModelForCausalLM.register(LinmixConfig, LinmixForCausalLM, exist_ok=True)

__all__ = ["EOS_CANDIDATES", "LinmixConfig", "LinmixForCausalLM", "MODEL_TYPE", "transformers_tokenizer"]
