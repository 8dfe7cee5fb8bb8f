"""Parts of the spectral mixer beyond the per-lag kernel: an implicit kernel defined at every lag, a short gate.

:class:`ImplicitKernel` is the implicit filter of Hyena (Poli et al., arXiv 2302.10866): the causal kernel is a
function of the lag rather than a table of ``max_len`` taps, so it exists at every length, and decoding can
evaluate it as far as it gets::

    k[d, lag] = MLP(phi(lag))[d] * exp(-alpha_d lag) + skip_d [lag == 0]
    phi(lag)  = (sin 2 pi (lag mod P_j) / P_j,  cos 2 pi (lag mod P_j) / P_j  for P_j = 2, 4, ..., 2^N_PERIODS;
                 lag / scale)

The periods form a fixed geometric ladder of powers of two, so the phases come from integer arithmetic and are
exact at any lag (a float ``lag * w`` loses digits at large lags); ``scale`` is ``max_len``, so the linear
feature spans ``[0, 1)`` over the lengths trained at. The MLP is ``Linear -> sin -> Linear -> sin -> Linear``
(width :data:`WIDTH`): with sine activations every hidden value lies in ``[-1, 1]``, so the kernel stays
bounded at lags far beyond ``max_len`` and the decay takes it to zero. ``alpha_d = exp(log_alpha_d)`` is
learned and starts spread geometrically so that ``exp(-alpha_d lag)`` falls to ``1/e`` after 1 token on the
first channel and after ``max_len`` tokens on the last (some channels reach far, some near). The last layer
starts at ``N(0, 0.02^2)`` and the lag-0 ``skip`` at 1, so the layer starts near the identity, as the per-lag
kernel does. Everything is computed in the accumulation dtype of the parameters.

The bidirectional mixer uses a two-sided kernel (``sides=2``: a second output head and decay for the lags
that look backwards), arranged on the circle of a length-``T`` input, see :meth:`ImplicitKernel.circular`.

:class:`ShortConv` is Hyena's depthwise causal short convolution (3 taps) that the ``gate`` option runs on the
value and gate branches before the long convolution.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from linmix.ops.dtypes import accumulation_dtype

#: periods 2, 4, ..., 2^N_PERIODS tokens of the positional features
N_PERIODS = 10
#: hidden width of the kernel MLP
WIDTH = 64
#: std of the MLP's last layer at init (the kernel beyond lag 0 starts this small)
OUT_INIT = 0.02
#: taps of the short convolution
SHORT_TAPS = 3


class ImplicitKernel(nn.Module):
    """``k[d, lag]`` of the module docstring for any lags: ``kernel(start, stop) -> [D, stop - start]``."""

    def __init__(self, d_model: int, scale: int, sides: int = 1) -> None:
        super().__init__()
        self.d_model, self.scale, self.sides = int(d_model), float(scale), int(sides)
        self.first = nn.Linear(2 * N_PERIODS + 1, WIDTH)
        self.second = nn.Linear(WIDTH, WIDTH)
        self.last = nn.Linear(WIDTH, sides * d_model)
        nn.init.normal_(self.last.weight, std=OUT_INIT)
        nn.init.zeros_(self.last.bias)
        reach = torch.logspace(0, math.log10(max(scale, 1)), d_model)  # tokens until exp(-alpha lag) = 1/e
        self.log_alpha = nn.Parameter(-reach.log().expand(sides, d_model).clone())
        self.skip = nn.Parameter(torch.ones(d_model))

    def features(self, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        """``phi(lag)`` for lags ``start .. stop - 1``: ``[n, 2 N_PERIODS + 1]``."""
        lag = torch.arange(start, stop, device=self.skip.device)
        periods = 2 ** torch.arange(1, N_PERIODS + 1, device=lag.device)
        angle = (2 * math.pi) * (lag[:, None] % periods).to(dtype) / periods.to(dtype)
        return torch.cat([angle.sin(), angle.cos(), lag[:, None].to(dtype) / self.scale], dim=1)

    def sided(self, start: int, stop: int) -> torch.Tensor:
        """Every side's kernel for lags ``start .. stop - 1``: ``[sides, D, n]`` (side 0 looks back in time)."""
        work = accumulation_dtype(self.skip.dtype)
        h = self.features(start, stop, work)
        for layer in (self.first, self.second):
            h = torch.sin(F.linear(h, layer.weight.to(work), layer.bias.to(work)))
        k = F.linear(h, self.last.weight.to(work), self.last.bias.to(work))  # [n, sides * D]
        k = k.t().reshape(self.sides, self.d_model, stop - start)
        lag = torch.arange(start, stop, device=k.device, dtype=work)
        k = k * torch.exp(-self.log_alpha.to(work).exp()[:, :, None] * lag)
        if start == 0 and stop > 0:  # the lag-0 skip, on the causal side only
            impulse = torch.zeros(self.sides, 1, stop, dtype=work, device=k.device)
            impulse[0, 0, 0] = 1.0
            k = k + impulse * self.skip.to(work)[:, None]
        return k

    def forward(self, start: int, stop: int) -> torch.Tensor:
        """The causal kernel (side 0) for lags ``start .. stop - 1``: ``[D, n]``."""
        return self.sided(start, stop)[0]

    def circular(self, T: int) -> torch.Tensor:
        """The two-sided kernel on the circle of a length-``T`` input: ``[D, T]``, entry ``m`` = lag ``m``.

        Lags ``0 .. ceil(T/2) - 1`` come from side 0 (earlier inputs), the remaining positions
        ``m = ceil(T/2) .. T - 1`` from side 1 at lag ``T - m`` (later inputs, ``1 .. T//2``).
        """
        k = self.sided(0, T // 2 + 1)
        return torch.cat([k[0, :, : T - T // 2], k[1, :, 1:].flip(-1)], dim=-1)


class ShortConv(nn.Module):
    """Depthwise causal convolution with :data:`SHORT_TAPS` taps: ``y[t] = sum_j w[:, j] u[t - j]``.

    Starts as the identity (tap 0 = 1, the others 0). :meth:`step` keeps the last ``SHORT_TAPS - 1`` inputs.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        weight = torch.zeros(channels, SHORT_TAPS)
        weight[:, 0] = 1.0
        self.weight = nn.Parameter(weight)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``u: [B, T, C]`` -> ``[B, T, C]``, zero before the first input."""
        T, pad = u.shape[1], SHORT_TAPS - 1
        padded = F.pad(u, (0, 0, pad, 0))
        w = self.weight.to(u.dtype)
        return sum(w[:, j] * padded[:, pad - j: pad - j + T] for j in range(SHORT_TAPS))

    def tail(self, u: torch.Tensor) -> torch.Tensor:
        """The last ``SHORT_TAPS - 1`` inputs of ``u: [B, T, C]`` (zeros before the start): the step state."""
        return F.pad(u, (0, 0, SHORT_TAPS - 1, 0))[:, u.shape[1]:]

    def step(self, u_t: torch.Tensor, tail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One input ``u_t: [B, C]`` after ``tail: [B, SHORT_TAPS - 1, C]`` (oldest first)."""
        window = torch.cat([tail, u_t.unsqueeze(1)], dim=1)  # [B, SHORT_TAPS, C], newest last
        w = self.weight.to(u_t.dtype)
        y = sum(w[:, j] * window[:, SHORT_TAPS - 1 - j] for j in range(SHORT_TAPS))
        return y, window[:, 1:]
