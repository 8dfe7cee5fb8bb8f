"""Text + numeric regression: a mixer-stack text branch and a numeric MLP, fused by addition or concatenation
(or the text branch alone, the reference that shows what the numeric inputs add)."""
from __future__ import annotations

import torch
from torch import nn

from linmix.config import ModelConfig
from linmix.models.classifier import TextEncoder
from linmix.models.pretrained import PretrainedMixin


class MultimodalRegressor(PretrainedMixin, nn.Module):
    """Predict one number from a text and ``n_numeric`` features.

    ``fusion="add"`` maps both branches into one shared latent of size D and adds them (the summation
    papers' design); ``fusion="concat"`` concatenates them; ``fusion="text"`` has no numeric branch at all
    (``numeric`` is still passed, shape-checked and ignored, so every fusion trains on the same batches).
    A small MLP maps the fused vector to ``[B]``.
    """

    def __init__(self, vocab_size: int, n_numeric: int, d_model: int = 256, layers: str = "summation",
                 fusion: str = "add", max_len: int = 512, n_heads: int = 4, pooling: str = "mean",
                 positional: str = "learned", arch: str = "block", norm: str = "pre", ffn_mult: int = 4,
                 dropout: float = 0.0, mixer_options: dict[str, dict] | None = None) -> None:
        super().__init__()
        if not isinstance(n_numeric, int) or n_numeric < 1:
            raise ValueError(f"n_numeric must be a positive integer, got {n_numeric!r}")
        self.config = ModelConfig(head="multimodal", vocab_size=vocab_size, n_numeric=n_numeric, d_model=d_model,
                                  layers=layers, fusion=fusion, max_len=max_len, n_heads=n_heads, pooling=pooling,
                                  positional=positional, arch=arch, norm=norm, ffn_mult=ffn_mult, dropout=dropout,
                                  mixer_options=dict(mixer_options or {})).resolved()
        self.fusion, self.n_numeric = fusion, n_numeric
        self.text = TextEncoder(self.config)
        self.numeric = (None if fusion == "text" else
                        nn.Sequential(nn.Linear(n_numeric, d_model), nn.ReLU(), nn.Linear(d_model, d_model)))
        fused = 2 * d_model if fusion == "concat" else d_model
        self.head = nn.Sequential(nn.Linear(fused, d_model), nn.ReLU(), nn.Linear(d_model, 1))

    def forward(self, ids: torch.Tensor, numeric: torch.Tensor,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``ids: [B, T]``, ``numeric: [B, n_numeric]`` float -> predictions ``[B]``."""
        if numeric.dim() != 2 or numeric.shape != (ids.shape[0], self.n_numeric):
            raise ValueError(
                f"numeric must have shape [B={ids.shape[0]}, n_numeric={self.n_numeric}], got {list(numeric.shape)}"
            )
        z = self.text(ids, padding_mask)
        if self.numeric is not None:
            n = self.numeric(numeric.to(z.dtype))
            z = z + n if self.fusion == "add" else torch.cat([z, n], -1)
        return self.head(z).squeeze(-1)
