"""FNet: parameter-free 2-D Fourier mixing, ``y = Re(FFT_T(FFT_D(x)))``.

What it computes, for ``x: [B, T, D]``::

    y[t, e] = scale * sum_{s, d} x[s, d] * cos(2 pi (t s / T + e d / D))     # = Re(fft2(x)) over (T, D)

with ``scale = 1`` for ``norm="backward"`` (the FNet paper, Lee-Thorp et al. 2021) and ``1 / sqrt(T D)``
for ``norm="ortho"`` (the default here: it keeps the output on the scale of the input whatever T and D, so
a residual stream does not grow with the sequence length). Every output position reads every input
position, so there is no causal form: building it with ``causal=True`` is a ``ValueError``. Zeroed padding
contributes nothing, but the output at real positions depends on the padded length T through the DFT
frequencies. FFTs run in float32 (float64 for float64 input) and are cast back, so bfloat16 works.
Cost: O(T D log(T D)) time, no parameters. The transform follows T and nothing is sized by ``max_len``, so
it accepts sequences past ``max_len`` (length-free; there is no streaming form either way).
"""
from __future__ import annotations

import math

import torch

from linmix.mixers.base import Mixer
from linmix.mixers.registry import register
from linmix.ops.dtypes import accumulation_dtype

NORMS = ("ortho", "backward")


@register("fnet")
class FNetMixer(Mixer):
    """Parameter-free Re(FFT2) over (T, D); bidirectional only (causal=True raises ValueError)."""

    supports_causal = False
    supports_streaming = False
    bidirectional_reason = ("its 2-D Fourier transform mixes every position with every other, "
                            "so it has no leak-free causal form")
    test_grid = ({}, {"norm": "backward"})

    def __init__(self, d_model: int, max_len: int, causal: bool, norm: str = "ortho") -> None:
        super().__init__(d_model, max_len, causal)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.norm = norm

    @property
    def length_free(self) -> bool:
        """No parameters and no table: the DFT is taken at whatever length the input has."""
        return True

    def _mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        y = torch.fft.fft2(x.to(accumulation_dtype(x.dtype)), dim=(1, 2), norm=self.norm).real
        return y.to(x.dtype)

    def _reference(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Explicit DFT matrices: ``Re(F_T x F_D) = C_T x C_D - S_T x S_D``."""
        T, D = x.shape[1], x.shape[2]
        cos_t, sin_t = _dft_cos_sin(T, x)
        cos_d, sin_d = _dft_cos_sin(D, x)
        y = torch.einsum("ts,bsd,de->bte", cos_t, x, cos_d) - torch.einsum("ts,bsd,de->bte", sin_t, x, sin_d)
        scale = 1.0 / math.sqrt(T * D) if self.norm == "ortho" else 1.0
        return y * scale

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, norm={self.norm}"


def _dft_cos_sin(n: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine parts of the n-point DFT matrix, angles reduced mod n for accuracy."""
    i = torch.arange(n, device=like.device)
    angle = (2 * math.pi / n) * ((i[:, None] * i[None, :]) % n).to(like.dtype)
    return torch.cos(angle), torch.sin(angle)

