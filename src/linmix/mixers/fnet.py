"""FNet: parameter-free 2-D Fourier mixing, ``y = Re(FFT_T(FFT_D(x)))``.

What it computes, for ``x: [B, T, D]``::

    y[t, e] = scale * sum_{s, d} x[s, d] * cos(2 pi (t s / T + e d / D))     # = Re(fft2(x)) over (T, D)

with ``scale = 1`` for ``norm="backward"`` (the FNet paper, Lee-Thorp et al. 2021) and ``1 / sqrt(T D)``
for ``norm="ortho"`` (the default here: it keeps the output on the scale of the input whatever T and D, so
a residual stream does not grow with the sequence length). Every output position reads every input
position, so there is no causal form: building it with ``causal=True`` is a ``ValueError``. Zeroed padding
contributes nothing, but the output at real positions depends on the padded length T through the DFT
frequencies. FFTs run in float32 (float64 for float64 input) and are cast back, so bfloat16 works.
Cost: O(T D log(T D)) time, no parameters.
"""
from __future__ import annotations

import math

import torch

from linmix.mixers.base import Mixer
from linmix.mixers.registry import register

NORMS = ("ortho", "backward")


class FNetMixer(Mixer):
    """``Re(fft2(x))`` over the time and feature axes; bidirectional only, no parameters."""

    supports_causal = False

    def __init__(self, d_model: int, max_len: int, causal: bool, norm: str = "ortho") -> None:
        if causal:
            raise ValueError(
                "fnet is bidirectional only: its 2-D Fourier transform mixes every position with every other, "
                "so it has no leak-free causal form. Build it with causal=False (e.g. in the Classifier); "
                "the causal LM needs a causal-capable mixer such as 'spectral' or 'summation'."
            )
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        super().__init__(d_model, max_len, causal)
        self.norm = norm

    def mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        y = torch.fft.fft2(x.to(work), dim=(1, 2), norm=self.norm).real
        return y.to(x.dtype)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """Explicit DFT matrices: ``Re(F_T x F_D) = C_T x C_D - S_T x S_D`` (tests only)."""
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


@register("fnet")
def fnet(d_model: int, max_len: int, causal: bool, norm: str = "ortho") -> FNetMixer:
    """Parameter-free Re(FFT2) over (T, D); bidirectional only (causal=True raises ValueError)."""
    return FNetMixer(d_model, max_len, causal, norm=norm)
