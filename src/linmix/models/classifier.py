"""Sequence classifier: embeddings -> mixer stack -> pooled vector -> linear head."""
from __future__ import annotations

import torch
from torch import nn

from linmix.config import ModelConfig
from linmix.models.blocks import SequenceEncoder
from linmix.models.pooling import check_pooling, pool
from linmix.models.pretrained import PretrainedMixin


class TextEncoder(nn.Module):
    """A :class:`SequenceEncoder` plus padding-aware pooling (and a CLS token when ``pooling="cls"``)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check_pooling(cfg.pooling, cfg.causal)
        self.pooling = cfg.pooling
        self.vocab_size = cfg.vocab_size
        extra = 1 if cfg.pooling == "cls" else 0
        # The CLS token is one extra vocabulary entry prepended at position 0.
        self.seq = SequenceEncoder(cfg, cfg.causal, vocab_size=cfg.vocab_size + extra, max_len=cfg.max_len + extra)
        self.max_len = cfg.max_len

    def forward(self, ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        self.seq.check_ids(ids, padding_mask)
        if ids.shape[1] > self.max_len:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds max_len={self.max_len}; truncate the input")
        if ids.numel() and int(ids.max()) >= self.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}); got max {int(ids.max())}")
        if self.pooling == "cls":
            cls = ids.new_full((ids.shape[0], 1), self.vocab_size)
            ids = torch.cat([cls, ids], 1)
            if padding_mask is not None:
                padding_mask = torch.cat([padding_mask.new_ones(ids.shape[0], 1), padding_mask], 1)
        return pool(self.seq(ids, padding_mask), padding_mask, self.pooling)


class Classifier(PretrainedMixin, nn.Module):
    """Text classifier over any layer spec.

    The summation papers' single-layer design is ``Classifier(V, C, layers="summation", arch="bare")``: embedding ->
    mixer -> pooled -> linear, with their raw sum (a bare stack's summation layers default to
    ``normalize="none"``: :data:`linmix.defaults.BARE_MIXER_OPTIONS`). ``arch="block"`` (default) uses residual
    blocks with feed-forward layers, where summation divides by the token count.
    """

    def __init__(self, vocab_size: int, num_classes: int, d_model: int = 256, layers: str = "summation",
                 max_len: int = 512, n_heads: int = 4, pooling: str = "mean", positional: str = "learned",
                 arch: str = "block", norm: str = "pre", ffn_mult: int = 4, dropout: float = 0.0,
                 causal: bool = False, mixer_options: dict[str, dict] | None = None) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        self.config = ModelConfig(head="classify", vocab_size=vocab_size, num_classes=num_classes, d_model=d_model,
                                  layers=layers, max_len=max_len, n_heads=n_heads, pooling=pooling,
                                  positional=positional, arch=arch, norm=norm, ffn_mult=ffn_mult, dropout=dropout,
                                  causal=causal, mixer_options=dict(mixer_options or {})).resolved()
        self.encoder = TextEncoder(self.config)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``ids: [B, T]`` (+ ``padding_mask: [B, T]`` bool, True = real) -> logits ``[B, num_classes]``."""
        return self.head(self.encoder(ids, padding_mask))
