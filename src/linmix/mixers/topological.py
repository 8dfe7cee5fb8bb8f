"""Topological mixing: value heads modulated by a complex number read from a compressed local context.

What it computes, for ``x: [B, T, D]`` with ``H`` heads, stride ``s``, encoder kernel ``K >= s``,
``nb = ceil(T / s)`` blocks and block ``j`` = positions ``j s .. j s + s - 1``::

    v[t] = W_v x[t]                                   # bias-free; head h = channels [h dh, (h+1) dh)
    a, b = first and second half of each value head   # read as the complex number a + i b
    p[j] = Conv1d_{D -> 3H, kernel K, stride s}(x)[j] # one encoder window per block (windows below)
    delta = pi tanh(p_delta), chi = pi/4 tanh(p_chi), radius = pi/2 sigmoid(p_radius)        # per head
    m[j]  = radius * (cos(delta/2) + i sin(delta/2) sin(2 chi))  -> (re, im): [B, 2H, nb]
    m'    = m (bidirectional)  or  m'[j] = m[j-1], m'[0] = 0 (causal: shifted right by one block)
    (re, im)[j s + r] = c + sum_i W_T[i, :, r] m'[i, j]     # ConvTranspose1d(2H, 2H, kernel s, stride s)
    out[t] = W_o concat_h[a re_h - b im_h, a im_h + b re_h] + b_o   # (a + i b)(re + i im) per head

The encoder window of block ``j`` is, in positions of ``x`` (zeros outside ``0 .. T-1``):

* causal: ``j s + s - K .. j s + s - 1`` (left padding ``K - s``): it ends with the block. After the shift,
  position ``t`` in block ``j`` is modulated by the window of block ``j - 1``, i.e. ``j s - K .. j s - 1``,
  all strictly before ``t``; block 0 gets only the bias ``c``. Nothing reads ahead.
* bidirectional: ``j s - L .. j s - L + K - 1`` with ``L = (K - s) // 2``: the block plus a halo split
  evenly on both sides; no shift.

Either way T is zero-padded on the right up to ``nb s``; in the causal form that padding only reaches the
last window, whose modulation is shifted out. So this is a *local* mixer: output ``t`` depends on ``x[t]``
(through ``v``) and on one encoder window of ``K`` positions (reach ``K + s - 1`` back in the causal form);
nothing farther away. Cost: O(T D^2) for W_v and W_o plus O(T K D H / s) for the encoder, O(T D) memory;
streaming state O(K D). The convolutions slide over the sequence and nothing is sized by ``max_len``, so the
mixer is length-free: sequences and decoding positions past ``max_len`` are the same layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from linmix.mixers.base import Mixer, MixerState
from linmix.mixers.registry import register
from linmix.ops.dtypes import accumulation_dtype


@dataclass
class TopologicalState(MixerState):
    """The last ``K`` inputs ``[B, K, D]`` and the decoded modulation of the current block ``[B, 2H, s]``."""

    history: torch.Tensor | None = None
    mod: torch.Tensor | None = None


@register("topological")
class TopologicalMixer(Mixer):
    """Value heads rotated/scaled by a complex modulation decoded from a strided-conv summary of the context.

    See the module docstring for the exact formula. Streaming (causal only): a :class:`TopologicalState`;
    when a block completes, its window is encoded and decoded into the next block's modulation. O(K D)
    memory and O(K D H) extra time per completed block, whatever the position.
    """

    test_grid = ({}, {"n_heads": 2, "stride": 3, "kernel_size": 5})

    def __init__(self, d_model: int, max_len: int, causal: bool, n_heads: int = 4, stride: int = 4,
                 kernel_size: int | None = None) -> None:
        super().__init__(d_model, max_len, causal)
        kernel_size = 2 * stride if kernel_size is None else kernel_size
        self._check_options(d_model, n_heads, stride, kernel_size)
        self.n_heads, self.stride, self.kernel_size = n_heads, stride, kernel_size
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.encoder = nn.Conv1d(d_model, 3 * n_heads, kernel_size=kernel_size, stride=stride)
        self.decoder = nn.ConvTranspose1d(2 * n_heads, 2 * n_heads, kernel_size=stride, stride=stride)
        self.out = nn.Linear(d_model, d_model)

    @staticmethod
    def _check_options(d_model: int, n_heads: int, stride: int, kernel_size: int) -> None:
        if n_heads <= 0 or d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(
                f"d_model={d_model} must split into n_heads={n_heads} heads of even size "
                "(each head is read as a complex number a + ib); pick n_heads dividing d_model/2"
            )
        if stride <= 0:
            raise ValueError(f"stride must be a positive integer, got {stride}")
        if kernel_size < stride:
            raise ValueError(
                f"kernel_size={kernel_size} must be >= stride={stride} so every input reaches the encoder"
            )

    @property
    def length_free(self) -> bool:
        """Strided convolutions and an O(K D) state: nothing depends on ``max_len``."""
        return True

    # ------------------------------------------------------------------------------------ pieces
    def modulation_params(self, p: torch.Tensor) -> torch.Tensor:
        """Encoder output ``[B, 3H, n]`` -> ``(re, im)`` of ``radius (cos(d/2) + i sin(d/2) sin(2 chi))``."""
        p_delta, p_chi, p_radius = p.chunk(3, dim=1)
        delta = math.pi * torch.tanh(p_delta)
        chi = (math.pi / 4) * torch.tanh(p_chi)
        radius = (math.pi / 2) * torch.sigmoid(p_radius)
        re = radius * torch.cos(delta / 2)
        im = radius * torch.sin(delta / 2) * torch.sin(2 * chi)
        return torch.cat([re, im], dim=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The strided encoder convolution, ``[B, D, T] -> [B, 3H, T / stride]``, computed in float32 for
        bf16/fp16 inputs: a low-precision strided ``conv1d`` is badly wrong on some CPUs' kernels (relative
        error near 1 against float32), and this convolution is small."""
        acc = accumulation_dtype(x.dtype)
        if acc == x.dtype:
            return self.encoder(x)
        w, b = self.encoder.weight, self.encoder.bias
        y = F.conv1d(x.to(acc), w.to(acc), None if b is None else b.to(acc), self.encoder.stride)
        return y.to(x.dtype)

    def left_pad(self) -> int:
        """Zeros before position 0 so that encoder window j is placed as the module docstring says."""
        extra = self.kernel_size - self.stride
        return extra if self.causal else extra // 2

    def modulation(self, x: torch.Tensor) -> torch.Tensor:
        """Per-position ``(re, im)`` for every head, ``[B, T, 2H]`` (parallel form)."""
        T, s, K = x.shape[1], self.stride, self.kernel_size
        nb = -(-T // s)
        left = self.left_pad()
        right = (nb - 1) * s + K - T - left
        m = self.modulation_params(self.encode(F.pad(x.transpose(1, 2), (left, right))))
        if self.causal:
            m = F.pad(m, (1, 0))[..., :nb]
        return self.decoder(m)[..., :T].transpose(1, 2)

    def rotate(self, v: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        """``(a + i b)(re + i im)`` per head: ``v: [..., D]``, ``mod: [..., 2H]`` -> ``[..., D]``."""
        H = self.n_heads
        heads = v.unflatten(-1, (H, 2, -1))
        a, b = heads[..., 0, :], heads[..., 1, :]
        re, im = mod[..., :H, None], mod[..., H:, None]
        return torch.stack([a * re - b * im, a * im + b * re], dim=-2).flatten(-3)

    # ------------------------------------------------------------------------------ parallel form
    def _mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Convolutions over the whole sequence; the base zeroed padded inputs, so no window reads garbage."""
        return self.out(self.rotate(self.value(x), self.modulation(x)))

    def _reference(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Per-position loop straight from the formula: window, encode, decode, rotate."""
        B, T, _ = x.shape
        s, K = self.stride, self.kernel_size
        mods = []
        for t in range(T):
            j, r = divmod(t, s)
            src = j - 1 if self.causal else j
            m = torch.zeros(B, 2 * self.n_heads, dtype=x.dtype, device=x.device)
            if src >= 0:
                m = self._reference_block(x, src * s + s - K if self.causal else src * s - self.left_pad())
            mods.append(self.decoder.bias + torch.einsum("bi,io->bo", m, self.decoder.weight[:, :, r]))
        return self.out(self.rotate(self.value(x), torch.stack(mods, dim=1)))

    def _reference_block(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """``(re, im)`` of the window ``x[start .. start + K - 1]`` (zeros outside the sequence), ``[B, 2H]``."""
        p = self.encoder.bias.expand(x.shape[0], -1)
        for k in range(self.kernel_size):
            if 0 <= start + k < x.shape[1]:
                p = p + x[:, start + k] @ self.encoder.weight[:, :, k].T
        return self.modulation_params(p.unsqueeze(-1)).squeeze(-1)

    # ----------------------------------------------------------------------------- streaming form
    def block_modulation(self, window: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """Decoded ``(re, im)`` for the ``s`` positions of a block, ``[B, 2H, s]``.

        ``window: [B, K, D]`` is the encoder window of the previous block; ``None`` (block 0) decodes zeros,
        which leaves only the decoder bias, exactly as the shifted parallel form does.
        """
        if window is None:
            p = self.decoder.weight.new_zeros(batch_size, 2 * self.n_heads, 1)
        else:
            p = self.modulation_params(self.encode(window.transpose(1, 2)))
        return self.decoder(p)

    def _init_state(self, batch_size: int) -> TopologicalState:
        history = self.value.weight.new_zeros(batch_size, self.kernel_size, self.d_model)
        return TopologicalState(0, history, self.block_modulation(None, batch_size))

    def _step(self, x_t: torch.Tensor, state: TopologicalState) -> tuple[torch.Tensor, TopologicalState]:
        """Rotate ``W_v x_t`` by the current block's modulation; encode the window when a block completes."""
        pos, mod = state.pos, state.mod
        y = self.out(self.rotate(self.value(x_t), mod[:, :, pos % self.stride]))
        history = torch.cat([state.history[:, 1:], x_t.unsqueeze(1).to(state.history.dtype)], dim=1)
        if (pos + 1) % self.stride == 0:
            mod = self.block_modulation(history, x_t.shape[0])
        return y, TopologicalState(pos + 1, history, mod)

    def _prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, TopologicalState]:
        """Whole prompt in the parallel form; the state is rebuilt from the last windows of the prompt."""
        B, T, _ = x.shape
        K = self.kernel_size
        padded = F.pad(x, (0, 0, K, 0))  # padded[:, i] = x[:, i - K]
        done = (T // self.stride) * self.stride  # end of the last completed block
        window = padded[:, done : done + K] if done > 0 else None
        state = TopologicalState(T, padded[:, T : T + K], self.block_modulation(window, B))
        return self._mix(x, None), state
