"""Fixed sinusoidal positions (Vaswani et al. 2017): a value for every position, with nothing to learn or store.

Channel ``d`` of the ``D`` channels at integer position ``t`` is::

    S[t, d] = sin(t * w_d + phi_d),   w_d = base^(-2 floor(d / 2) / D),   phi_d = 0 (even d), pi/2 (odd d)

so channels pair up as (sin, cos) of one frequency, the frequencies form a geometric ladder with periods
from ``2 pi`` (``w = 1``) up to about ``base * 2 pi``, and half the channels are cosines. Unlike a learned
``[max_len, D]`` table it is defined at every position: a model trained at 256 tokens sees well-formed
positions at 64k. Every entry lies in ``[-1, 1]``.

The angles are computed in float64 from the integer positions (float32 on devices without float64), so
position 65,535 is as accurate as position 5, and a row depends only on its own position: the row a
streaming step computes for position ``t`` equals row ``t`` of the parallel form (to rounding).
"""
from __future__ import annotations

import math

import torch

DEFAULT_BASE = 10000.0
#: the amplitude at which a sinusoid has RMS 0.02, the scale a learned ``N(0, 0.02^2)`` table starts at
TABLE_SCALE = 0.02 * math.sqrt(2)


def sinusoids(start: int, length: int, d_model: int, dtype: torch.dtype = torch.float32,
              device: torch.device | str | None = None, base: float = DEFAULT_BASE) -> torch.Tensor:
    """``S[t, d]`` of the module docstring for positions ``start .. start + length - 1``: ``[length, D]``."""
    device = torch.device("cpu") if device is None else torch.device(device)
    work = torch.float32 if device.type == "mps" else torch.float64
    channel = torch.arange(d_model, device=device)
    freq = base ** (-(2 * (channel // 2)).to(work) / d_model)
    phase = (channel % 2).to(work) * (math.pi / 2)
    positions = torch.arange(start, start + length, device=device, dtype=work)
    return torch.sin(positions[:, None] * freq[None, :] + phase[None, :]).to(dtype)
