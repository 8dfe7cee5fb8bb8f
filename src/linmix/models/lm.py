"""Causal language model: embeddings -> mixer blocks -> tied or separate output head, with streaming generation."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from linmix.config import ModelConfig
from linmix.models.blocks import SequenceEncoder
from linmix.models.pretrained import PretrainedMixin


class LanguageModel(PretrainedMixin, nn.Module):
    """A causal LM over any layer spec, e.g. ``"summation*3,attention"`` (the hybrid).

    Every mixer is built with ``causal=True``; :meth:`generate` decodes with each mixer's ``step``, so a new
    token costs O(1) in the position for summation/aggregation/linear-attention layers and O(t) for
    attention layers (their KV cache). A :attr:`length_free` model (``positional`` "none", "rotary" or
    "sinusoidal" and length-free mixers only, e.g. ``summation(positions=sinusoidal)``, ``linear_attention``,
    ``attention``) reads and generates sequences of any length; otherwise ``max_len`` is a hard bound.

    ``save_pretrained`` writes ``model_type = "linmix_lm"``, which ``import linmix.hf`` registers with
    transformers, so the folder also loads with ``transformers.AutoModelForCausalLM.from_pretrained``.
    """

    saved_model_type = "linmix_lm"
    architectures = ("LinmixForCausalLM",)

    def __init__(self, vocab_size: int, d_model: int = 256, layers: str = "summation*3,attention",
                 max_len: int = 1024, n_heads: int = 4, positional: str = "learned", tie_weights: bool = True,
                 norm: str = "pre", ffn_mult: int = 4, dropout: float = 0.0,
                 mixer_options: dict[str, dict] | None = None) -> None:
        super().__init__()
        self.config = ModelConfig(head="lm", vocab_size=vocab_size, d_model=d_model, layers=layers,
                                  max_len=max_len, n_heads=n_heads, positional=positional, tie_weights=tie_weights,
                                  norm=norm, ffn_mult=ffn_mult, dropout=dropout, causal=True,
                                  mixer_options=dict(mixer_options or {})).resolved()
        self.encoder = SequenceEncoder(self.config, causal=True)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_weights:
            self.head.weight = self.encoder.embed.weight

    @property
    def max_len(self) -> int:
        return self.encoder.max_len

    @property
    def length_free(self) -> bool:
        """Whether the model is defined past ``max_len`` (see :attr:`SequenceEncoder.length_free`)."""
        return self.encoder.length_free

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids: [B, T]`` long -> logits ``[B, T, vocab_size]``; position t sees only ids[:, :t+1]."""
        return self.head(self.encoder(ids))

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, max_new_tokens: int = 100, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 stream: Callable[[torch.Tensor], None] | None = None,
                 generator: torch.Generator | None = None, eos_id: int | None = None) -> torch.Tensor:
        """Continue ``ids: [B, T]`` by up to ``max_new_tokens`` tokens; returns ``[B, T + new]``.

        ``temperature=0`` is greedy decoding. ``top_k`` keeps the k most likely tokens, ``top_p`` the
        smallest set whose probability reaches p. ``stream`` is called with each new ``[B]`` token tensor
        as soon as it is chosen (print as you go). With ``eos_id``, a sequence that has produced it keeps
        producing ``eos_id`` and generation stops once every sequence has. Runs in eval mode (no dropout)
        and restores the caller's mode.
        """
        if eos_id is not None and (not isinstance(eos_id, int) or isinstance(eos_id, bool)
                                   or not 0 <= eos_id < self.config.vocab_size):
            raise ValueError(f"eos_id must be an integer in [0, {self.config.vocab_size}), got {eos_id!r}")
        out = [ids]
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        for token in self.iter_generate(ids, max_new_tokens, temperature, top_k, top_p, generator):
            if eos_id is not None:
                token = torch.where(done, torch.full_like(token, eos_id), token)
                done = done | (token == eos_id)
            if stream is not None:
                stream(token)
            out.append(token.unsqueeze(1))
            if eos_id is not None and bool(done.all()):
                break
        return torch.cat(out, dim=1)

    @torch.no_grad()
    def iter_generate(self, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                      top_k: int | None = None, top_p: float | None = None,
                      generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
        """Yield new tokens ``[B]`` one at a time (the prompt runs as one parallel prefill), in eval mode."""
        was_training = self.training
        self.eval()
        try:
            yield from self._generate_tokens(ids, max_new_tokens, temperature, top_k, top_p, generator)
        finally:
            self.train(was_training)

    def _generate_tokens(self, ids: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int | None,
                         top_p: float | None, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
        _check_sampling(max_new_tokens, temperature, top_k, top_p)
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"prompt ids must have shape [B, T] with T >= 1, got {list(ids.shape)}")
        total = ids.shape[1] + max_new_tokens
        if total > self.max_len and not self.length_free:
            raise ValueError(
                f"prompt ({ids.shape[1]}) + max_new_tokens ({max_new_tokens}) = {total} exceeds "
                f"max_len={self.max_len}; shorten the prompt or ask for fewer tokens\n"
                f"tied to max_len by: {'; '.join(self.encoder.length_ties())}\n"
                "a length-free model generates without limit: positional='none', 'rotary' or 'sinusoidal' with "
                "length-free layers, e.g. summation(positions=sinusoidal), aggregation, linear_attention, "
                "attention, local_attention"
            )
        hidden, states = self.encoder.prefill(ids)
        logits = self.head(hidden[:, -1])
        position = ids.shape[1]
        for i in range(max_new_tokens):
            token = sample_next(logits, temperature, top_k, top_p, generator)
            yield token
            if i + 1 < max_new_tokens:
                hidden_t, states = self.encoder.step(token, states, position)
                logits = self.head(hidden_t)
                position += 1


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row of ``logits: [B, V]`` (greedy when ``temperature == 0``)."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already reach top_p; the first token always stays.
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _check_sampling(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
