"""The interface every token mixer implements.

A mixer maps ``x: [B, T, D]`` to ``y: [B, T, D]``. Subclasses implement :meth:`Mixer.mix`; the base class
checks shapes and lengths once, so every mixer fails the same way on bad input, and handles the padding
mask contract: padded inputs are zeroed before mixing and padded outputs are zeroed after it, so the
content of padded positions can never reach a real position through the input path.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

State = dict[str, Any]


class Mixer(nn.Module):
    """Base class for all token mixers.

    Attributes:
        d_model: feature size D.
        max_len: longest sequence accepted; longer input is a ``ValueError``.
        causal: True means ``y[:, t]`` depends only on ``x[:, :t+1]``.
    """

    #: whether the mixer has a leak-free causal form
    supports_causal: bool = True

    def __init__(self, d_model: int, max_len: int, causal: bool) -> None:
        super().__init__()
        if int(d_model) <= 0:
            raise ValueError(f"d_model must be a positive integer, got {d_model}")
        if int(max_len) <= 0:
            raise ValueError(f"max_len must be a positive integer, got {max_len}")
        if causal and not self.supports_causal:
            raise ValueError(
                f"{type(self).__name__} is bidirectional only; build it with causal=False "
                "or pick a causal-capable mixer"
            )
        self.d_model = int(d_model)
        self.max_len = int(max_len)
        self.causal = bool(causal)

    # ----------------------------------------------------------------------------------- parallel form
    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mix ``x: [B, T, D]``; ``padding_mask: [B, T]`` bool, True = real token."""
        self.check_input(x, padding_mask)
        if padding_mask is not None:
            x = x * padding_mask.unsqueeze(-1).to(x.dtype)
        y = self.mix(x, padding_mask)
        if padding_mask is not None:
            y = y * padding_mask.unsqueeze(-1).to(y.dtype)
        return y

    def mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """The mixing itself, on validated input whose padded positions are already zero."""
        raise NotImplementedError

    def check_input(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> None:
        """Raise ``ValueError`` naming the expected shape when ``x`` or the mask do not fit."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"{type(self).__name__} expects x of shape [B, T, D={self.d_model}], got {list(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"{type(self).__name__} expects a floating-point x, got {x.dtype}")
        T = x.shape[1]
        if T > self.max_len:
            raise ValueError(
                f"sequence length {T} exceeds max_len={self.max_len}; "
                f"build the mixer with max_len >= {T} or shorten the input"
            )
        if padding_mask is not None:
            if padding_mask.shape != x.shape[:2]:
                raise ValueError(
                    f"padding_mask must have shape [B, T] = {list(x.shape[:2])}, got {list(padding_mask.shape)}"
                )
            if padding_mask.dtype != torch.bool:
                raise ValueError(
                    f"padding_mask must be a bool tensor (True = real token), got {padding_mask.dtype}"
                )

    # ------------------------------------------------------------------------------- streaming form
    def init_state(self, batch_size: int) -> State:
        """Return the empty decoding state for ``batch_size`` sequences (causal mixers only)."""
        raise NotImplementedError(f"{type(self).__name__} does not support streaming decode")

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Consume one token ``x_t: [B, D]``; return ``y_t: [B, D]`` equal to the parallel output there."""
        raise NotImplementedError(f"{type(self).__name__} does not support streaming decode")

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Run a whole prompt ``x: [B, T, D]`` and return ``(y, state)`` ready for :meth:`step`.

        The default feeds the prompt through :meth:`step` one token at a time; mixers with a cheaper
        closed form (a running sum, a KV cache) override it.
        """
        self.check_input(x)
        state = self.init_state(x.shape[0])
        ys = []
        for t in range(x.shape[1]):
            y_t, state = self.step(x[:, t], state)
            ys.append(y_t)
        return torch.stack(ys, dim=1), state

    def check_step(self, x_t: torch.Tensor, state: State) -> None:
        """Validate a streaming input and that the state still has room for one more position."""
        if not self.causal:
            raise ValueError(f"{type(self).__name__} was built with causal=False; step() needs causal=True")
        if x_t.dim() != 2 or x_t.shape[-1] != self.d_model:
            raise ValueError(
                f"{type(self).__name__}.step expects x_t of shape [B, D={self.d_model}], got {list(x_t.shape)}"
            )
        if int(state["pos"]) >= self.max_len:
            raise ValueError(
                f"decoding position {int(state['pos'])} reaches max_len={self.max_len}; "
                "build the model with a larger max_len"
            )

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}, causal={self.causal}"
