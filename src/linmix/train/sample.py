"""Sampling text from a trained language model (a run directory or one of its checkpoints).

Generation streams: each new token is decoded and handed to a callback at once (``linmix sample`` prints
and flushes it). A length-free model (:attr:`LanguageModel.length_free`) decodes the whole prompt and every
new token in one stream, past ``max_len`` without limit. For any other model, text longer than its
``max_len`` is produced with a sliding window: when the context is full, the last ``max_len // 2`` tokens
are prefilled again and decoding continues from there.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from linmix.data.tokenizers import CONFIG_FILE, Tokenizer, load_tokenizer
from linmix.models import LanguageModel
from linmix.models.pretrained import CONFIG, WEIGHTS, load_pretrained, read_config, saved_class_name
from linmix.train.checkpoint import latest_checkpoint


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """The folder holding ``config.json`` + ``model.safetensors``: ``path`` itself (a run directory or a
    checkpoint folder), or a run directory's latest checkpoint."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    if not p.is_dir():
        raise ValueError(f"checkpoint {p} is a file; pass a run directory or a checkpoint folder")
    if (p / CONFIG).is_file() and (p / WEIGHTS).is_file():
        return p
    found = latest_checkpoint(p)
    if found is not None:
        return found
    raise ValueError(f"{p} is not a linmix checkpoint or run directory (no {CONFIG} + {WEIGHTS})")


def find_tokenizer_dir(model_dir: Path) -> Path:
    """The tokenizer saved beside the model, or in the run directory above a checkpoint folder."""
    for folder in (model_dir, model_dir.parent, model_dir.parent.parent):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise FileNotFoundError(f"no saved tokenizer ({CONFIG_FILE}) in {model_dir} or its run directory")


def load_lm(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[LanguageModel, Tokenizer]:
    """Load the language model and tokenizer of a run directory or checkpoint folder."""
    model_dir = resolve_model_dir(path)
    config = read_config(model_dir)
    kind = saved_class_name(config) or config.get("model_type")
    if kind != "LanguageModel":
        raise ValueError(f"{model_dir} holds a {kind}, not a LanguageModel; only language models can sample text")
    tokenizer = load_tokenizer(find_tokenizer_dir(model_dir))
    model = load_pretrained(model_dir, map_location=str(device))
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"the tokenizer in {model_dir} has {tokenizer.vocab_size} ids but the model only "
                         f"{model.config.vocab_size}; they do not belong together")
    return model.eval(), tokenizer


class StreamDecoder:
    """Turns a growing id sequence into text deltas, holding back an incomplete UTF-8 character (BPE).

    Each push decodes the ids since the last line break (plus the prompt at first), so the cost stays
    proportional to the line length, and tokenizers that join tokens (word: spaces) print correctly.
    """

    def __init__(self, tokenizer: Tokenizer, prefix: list[int]) -> None:
        self.tokenizer, self.ids = tokenizer, list(prefix)
        self.base = tokenizer.decode(self.ids)
        self.emitted = 0

    def push(self, token: int) -> str:
        self.ids.append(int(token))
        text = self.tokenizer.decode(self.ids)
        new = text[len(self.base):] if text.startswith(self.base) else text
        if new.endswith("\ufffd"):  # a byte-level token that ends inside a character: wait for the rest
            return ""
        delta, self.emitted = new[self.emitted:], len(new)
        if new.endswith("\n"):  # a safe point: start afresh
            self.ids, self.base, self.emitted = [], "", 0
        return delta


def check_sampling(tokenizer: Tokenizer, prompt: str, max_new_tokens: int, temperature: float,
                   top_k: int | None, top_p: float | None) -> list[int]:
    """``ValueError`` for nonsense sampling options; returns the prompt's ids."""
    if max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens must be >= 0, got {max_new_tokens}")
    if not temperature >= 0:
        raise ValueError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"--top-p must lie in (0, 1], got {top_p}")
    prompt_ids = tokenizer.encode(prompt)
    if not prompt_ids:
        raise ValueError("the prompt is empty after tokenization; give a non-empty --prompt")
    return prompt_ids


def sample_text(model: LanguageModel, tokenizer: Tokenizer, prompt: str, max_new_tokens: int = 500,
                temperature: float = 0.8, top_k: int | None = None, top_p: float | None = None, seed: int = 0,
                stream: Callable[[str], None] | None = None) -> str:
    """Continue ``prompt`` by ``max_new_tokens`` tokens; returns the generated text (without the prompt).

    ``stream`` receives each decoded piece as soon as its token is chosen. Sampling is seeded
    (``seed``); ``temperature=0`` is greedy. A length-free model keeps the whole text as its context; any
    other one slides a ``max_len`` window (see the module docstring).
    """
    prompt_ids = check_sampling(tokenizer, prompt, max_new_tokens, temperature, top_k, top_p)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    window = len(prompt_ids) + max_new_tokens if model.length_free else model.max_len  # free: one stream
    context = prompt_ids[-(window - 1):] if window > 1 else prompt_ids[-1:]
    decoder = StreamDecoder(tokenizer, prompt_ids)
    pieces: list[str] = []
    all_ids = list(context)

    def emit(token: torch.Tensor) -> None:
        piece = decoder.push(int(token[0]))
        all_ids.append(int(token[0]))
        if piece:
            pieces.append(piece)
            if stream is not None:
                stream(piece)

    remaining = max_new_tokens
    while remaining > 0:
        n = min(remaining, window - len(context))
        ids = torch.tensor([context], dtype=torch.long, device=device)
        model.generate(ids, max_new_tokens=n, temperature=temperature, top_k=top_k, top_p=top_p, stream=emit,
                       generator=generator)
        remaining -= n
        context = all_ids[-max(1, window // 2):]
    return "".join(pieces)
