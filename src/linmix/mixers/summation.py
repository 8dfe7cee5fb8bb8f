"""Summation mixing: positional modulation, bias-free ReLU projections, then a (prefix) sum over tokens.

What it computes, for ``x: [B, T, D]``::

    u[t] = x[t] * (P[t] + pos_bias)                  # positions P (below), pos_bias = 1.0
    h[t] = relu(W_k ... relu(W_1 u[t]))              # depth k bias-free Linear(D, D), k in {1, 2}
    s[t] = sum_{i <= t} h[i]      (causal)           # prefix sum: O(T) time, O(T) memory
    s[t] = sum_{i}      h[i]      (bidirectional)    # one global sum broadcast to every position
    y[t] = W_o (s[t] / norm[t])                      # norm = 1, count, or sqrt(count)

The positions ``P`` are, with ``positions="learned"`` (the default, as in the summation papers), a learned
``[max_len, D]`` table initialised ``N(0, 0.02^2)``: the layer is then defined only up to ``max_len``. With
``positions="sinusoidal"`` they are ``P[t, d] = a_d * S[t, d]``, the fixed sinusoids of
:mod:`linmix.ops.sinusoidal` (a geometric ladder of frequencies, half the channels cosines) scaled by a
learned per-channel amplitude ``a`` that starts at ``0.02 * sqrt(2)`` (so ``P`` starts on the table's RMS
scale): defined at every position, so the layer is length-free and accepts sequences and decoding
positions past ``max_len``. ``positional=False`` skips the modulation (length-free as well).

There is no [T, T] object anywhere: the causal form is a blockwise prefix sum (see ``linmix.ops``), so the
cost of the layer is that of its projections plus a small O(T D) scan. The same machinery, with the
positional modulation and the nonlinearity switched off, is the ``aggregation`` preset.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from linmix.mixers.base import Mixer, MixerState
from linmix.mixers.registry import register
from linmix.ops.dtypes import accumulation_dtype
from linmix.ops.prefix_sum import prefix_sum
from linmix.ops.sinusoidal import TABLE_SCALE, sinusoids
from linmix.ops.sum_mix import sum_mix

NORMALIZATIONS = ("none", "count", "sqrt")
POSITIONS = ("learned", "sinusoidal")


@dataclass
class SumState(MixerState):
    """Running sum of the features ``[B, D]`` in the accumulation dtype (``None`` before the first token)."""

    total: torch.Tensor | None = None


class SumMixer(Mixer):
    """Modulate, project, sum over the sequence: the machinery behind ``summation`` and ``aggregation``.

    See the module docstring for the exact formula; the registered presets below fix which pieces are on.
    Streaming state: the running sum (D floats) per sequence: O(D) memory, whatever the length, so each
    decoded token costs the same at position 10 and at position 100,000.
    """

    def __init__(
        self,
        d_model: int,
        max_len: int,
        causal: bool,
        depth: int = 1,
        positional: bool = True,
        positions: str = "learned",
        pos_bias: float = 1.0,
        activation: bool = True,
        normalize: str = "none",
        out_proj: bool = True,
        noise_std: float = 0.0,
    ) -> None:
        super().__init__(d_model, max_len, causal)
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
        self.normalize = normalize
        self.activation = activation
        self.noise_std = float(noise_std)
        self.pos_bias = float(pos_bias)
        self.positions = positions
        learned, sinusoidal = positional and positions == "learned", positional and positions == "sinusoidal"
        self.pos = nn.Parameter(torch.randn(max_len, d_model) * 0.02) if learned else None
        self.pos_amplitude = nn.Parameter(torch.full((d_model,), TABLE_SCALE)) if sinusoidal else None
        self.proj = nn.ModuleList(nn.Linear(d_model, d_model, bias=False) for _ in range(depth))
        self.out = nn.Linear(d_model, d_model, bias=False) if out_proj else None

    @property
    def length_free(self) -> bool:
        """No learned position table: the same layer at every length, and its state is one running sum."""
        return self.pos is None

    def length_tie(self) -> str:
        """The learned table ties the layer to ``max_len``; the message names the two length-free choices."""
        if self.pos is None:
            return ""
        return "its learned [max_len, D] position table (build it with positions=sinusoidal or positional=false)"

    # ------------------------------------------------------------------------------------ pieces
    def position_rows(self, offset: int, length: int) -> torch.Tensor | None:
        """``P`` for positions ``offset .. offset + length - 1``, ``[length, D]`` (None: no modulation)."""
        if self.pos_amplitude is not None:
            a = self.pos_amplitude
            return sinusoids(offset, length, self.d_model, a.dtype, a.device) * a
        return None if self.pos is None else self.pos[offset : offset + length]

    def features(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Per-token part before the sum, ``[B, T, D]``: modulation by positions ``offset ..``, projections.

        Every piece is bias-free and ``relu(0) = 0``, so a zeroed (padded) token has zero features.
        """
        h = x
        p = self.position_rows(offset, x.shape[1])
        if p is not None:
            h = h * (p + self.pos_bias)
        for layer in self.proj:
            h = layer(h)
            if self.activation:
                h = torch.relu(h)
        return h

    def _scale(self, count: torch.Tensor) -> torch.Tensor | None:
        """What the sum is divided by for ``count`` summed tokens (count, sqrt(count)), or None."""
        if self.normalize == "none":
            return None
        count = count.clamp(min=1)
        return count if self.normalize == "count" else count.sqrt()

    def _divisor(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor | None:
        """:meth:`_scale` of the real tokens summed at each position, shaped to broadcast against the sum."""
        work = accumulation_dtype(x.dtype)
        if padding_mask is None:
            T = x.shape[1]
            if self.causal:
                return self._scale(torch.arange(1, T + 1, device=x.device, dtype=work).view(1, T, 1))
            return self._scale(torch.full((1, 1, 1), float(T), device=x.device, dtype=work))
        real = padding_mask.to(work)
        return self._scale((real.cumsum(1) if self.causal else real.sum(1, keepdim=True)).unsqueeze(-1))

    def finish(self, s: torch.Tensor, divisor: torch.Tensor | None, noise: bool = False) -> torch.Tensor:
        """Divide the sum, add the training noise when asked, project out."""
        if divisor is not None:
            s = s / divisor.to(s.dtype)
        if noise:
            s = s + self.noise_std * torch.randn_like(s)
        return self.out(s) if self.out is not None else s

    # ------------------------------------------------------------------------------ parallel form
    def _mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """The whole layer as one fused autograd function (:mod:`linmix.ops.sum_mix`).

        Padded rows need no extra masking there: the input is zeroed and every layer is bias-free with
        ``relu(0) = 0``, so their features are exactly zero. Training noise takes :meth:`_mix_noisy`.
        """
        if self.noise_std > 0 and self.training:
            return self._mix_noisy(x, padding_mask)
        pos = self.pos if self.pos is not None else self.position_rows(0, x.shape[1])  # the table, or P[:T]
        return sum_mix(x, pos, self._divisor(x, padding_mask), self.out.weight if self.out is not None else None,
                       [layer.weight for layer in self.proj], self.pos_bias, self.activation, self.causal)

    def _mix_noisy(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Training with ``noise_std > 0``: features -> prefix/global sum -> divide -> + noise -> W_o.

        Plain autograd, because the fused kernel has no slot for the noise between the sum and ``W_o``.
        """
        h = self.features(x)
        if self.causal:
            return self.finish(prefix_sum(h), self._divisor(x, padding_mask), noise=True)
        s = h.sum(1, keepdim=True, dtype=accumulation_dtype(h.dtype)).to(h.dtype)
        return self.finish(s, self._divisor(x, padding_mask), noise=True).expand(-1, x.shape[1], -1)

    def _reference(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """An explicit ``[B, T, T]`` visibility product: which real tokens each position sums."""
        h = self.features(x)
        T = x.shape[1]
        visible = torch.ones(T, T, dtype=torch.bool, device=x.device)
        visible = (visible.tril() if self.causal else visible).expand(x.shape[0], T, T)
        if padding_mask is not None:
            visible = visible & padding_mask[:, None, :]
        weights = visible.to(h.dtype)
        return self.finish(weights @ h, self._scale(weights.sum(-1, keepdim=True)))

    # ----------------------------------------------------------------------------- streaming form
    def _init_state(self, batch_size: int) -> SumState:
        return SumState()  # the running sum is created at the first step, on the input's device and precision

    def _step(self, x_t: torch.Tensor, state: SumState) -> tuple[torch.Tensor, SumState]:
        h = self.features(x_t.unsqueeze(1), offset=state.pos)[:, 0]
        total = h.to(accumulation_dtype(h.dtype))
        if state.total is not None:
            total = total + state.total
        count = torch.tensor(state.pos + 1.0, dtype=total.dtype, device=total.device)
        return self.finish(total.to(h.dtype), self._scale(count)), SumState(state.pos + 1, total)

    def _prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, SumState]:
        """Whole prompt in one parallel pass; the state is the last prefix sum."""
        s = prefix_sum(self.features(x))
        total = s[:, -1].to(accumulation_dtype(s.dtype))
        return self.finish(s, self._divisor(x, None)), SumState(x.shape[1], total)


@register("summation")
class SummationMixer(SumMixer):
    """x * (P + bias) -> bias-free ReLU projection(s) -> prefix/global sum -> output projection.

    ``normalize="count"`` (default) divides the sum at t by the number of tokens summed, so the layer's output
    scale does not grow with position; in a pre-norm stack a raw growing sum drowns the residual stream and
    trains markedly worse (Tiny Shakespeare char LM, 150 steps: val 2.53 with "count" vs 2.83 with "sqrt").
    ``normalize="none"`` is the summation papers' raw sum, and what a bare stack (``arch="bare"``: no residual
    to drown) builds unless told otherwise; ``positional=False`` skips the modulation when the
    model already applied it at the embedding. ``positions="sinusoidal"`` replaces the learned table by
    learned-amplitude sinusoids: the layer is then length-free (sequences and decoding past ``max_len``
    give the same layer, with an O(D) state); with the default table, ``max_len`` is a hard bound.
    """

    test_grid = ({}, {"depth": 2, "positional": False, "normalize": "none"}, {"positions": "sinusoidal"})

    def __init__(self, d_model: int, max_len: int, causal: bool, depth: int = 1, positional: bool = True,
                 positions: str = "learned", pos_bias: float = 1.0, normalize: str = "count") -> None:
        super().__init__(d_model, max_len, causal, depth=depth, positional=positional, positions=positions,
                         pos_bias=pos_bias, activation=True, normalize=normalize, out_proj=True)
