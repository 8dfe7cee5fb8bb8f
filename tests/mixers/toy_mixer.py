"""A mixer defined outside the package: the whole contract in ~30 lines, for tests and as a plugin example.

``ScaledPrefixMean`` computes ``y[t] = alpha * mean(x[s] for real s <= t)`` (causal) or over every real s
(bidirectional). Register it with ``linmix.mixers.registered(ScaledPrefixMean, NAME)``; then it works
everywhere a mixer name does, e.g. the layer spec ``"toy_scaled_mean(alpha=2)*4"``. From any test module:
``from mixers.toy_mixer import NAME, ScaledPrefixMean`` (tests/conftest.py puts tests/ on ``sys.path``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from linmix.mixers import Mixer, MixerState

NAME = "toy_scaled_mean"


@dataclass
class PrefixSumState(MixerState):
    """The running sum of the inputs ``[B, D]`` (``None`` before the first token)."""

    total: torch.Tensor | None = None


class ScaledPrefixMean(Mixer):
    """alpha times the mean of the real tokens so far (causal) or of all real tokens (bidirectional)."""

    test_grid = ({}, {"alpha": 2.0})

    def __init__(self, d_model: int, max_len: int, causal: bool, alpha: float = 1.0) -> None:
        super().__init__(d_model, max_len, causal)
        self.alpha = float(alpha)

    def _mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        real = torch.ones(x.shape[:2], dtype=x.dtype) if padding_mask is None else padding_mask.to(x.dtype)
        if self.causal:
            return self.alpha * x.cumsum(1) / real.cumsum(1).clamp(min=1).unsqueeze(-1)
        mean = x.sum(1, keepdim=True) / real.sum(1).clamp(min=1)[:, None, None]
        return (self.alpha * mean).expand_as(x)

    def _reference(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        T = x.shape[1]
        weights = torch.ones(T, T, dtype=x.dtype)
        weights = (weights.tril() if self.causal else weights).expand(x.shape[0], T, T)
        if padding_mask is not None:
            weights = weights * padding_mask[:, None, :].to(x.dtype)  # the mask, not the data: no NaN risk
        return self.alpha * (weights @ x) / weights.sum(-1, keepdim=True).clamp(min=1)

    def _init_state(self, batch_size: int) -> PrefixSumState:
        return PrefixSumState()

    def _step(self, x_t: torch.Tensor, state: PrefixSumState) -> tuple[torch.Tensor, PrefixSumState]:
        total = x_t if state.total is None else state.total + x_t
        return self.alpha * total / (state.pos + 1), PrefixSumState(state.pos + 1, total)
