"""The whole token-mixer contract, enforced once here so that every mixer fails and masks the same way.

A mixer maps ``x: [B, T, D]`` to ``y: [B, T, D]``. A subclass declares its options as keyword parameters of
``__init__`` after ``(d_model, max_len, causal)`` (the registry reads them from there) and implements hooks:

* ``_mix(x, padding_mask)``: the production form; ``_reference(x, padding_mask)``: the slow, obviously
  correct form the tests compare it with. Both receive validated input whose padded positions are exactly
  zero, and their outputs at padded positions are overwritten with zeros afterwards. Masking selects, never
  multiplies (:func:`linmix.ops.masking.zero_padded`), so padded positions may hold anything (NaN, inf,
  1e30, the output of an earlier layer) without reaching a real output or its gradient (``NaN * 0`` is NaN).
* ``_init_state(batch_size)``, ``_step(x_t, state)`` and optionally ``_prefill(x)``: streaming decode,
  called only for a causal mixer, with shapes and the ``max_len`` bound already checked. The state is a
  :class:`MixerState` dataclass (the position plus the mixer's own tensors).

``max_len`` bounds a mixer only when something in it is sized by it (a learned per-position table, a
kernel with ``max_len`` taps). A mixer without such a thing sets :attr:`Mixer.length_free`; it then
accepts sequences and decoding positions past ``max_len``. Positions of the tokens themselves are the
model's business: a mixer with no notion of order (attention without rotary) is length-free too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from linmix.ops.masking import zero_padded


@dataclass
class MixerState:
    """Streaming-decode state: ``pos`` = tokens consumed so far. Subclasses add their tensors as fields.

    Models pass states through opaquely; :meth:`nbytes` is what a benchmark reports as the state's memory.
    ``copy.copy`` shares the tensors; ``copy.deepcopy`` clones them, even mid-graph (a step may write a
    cache in place, so branch a decode from a deep copy).
    """

    pos: int = 0

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor field by name (fields still ``None`` are left out)."""
        items = ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        return {name: value for name, value in items if isinstance(value, torch.Tensor)}

    def nbytes(self) -> int:
        """Bytes held by the state's tensors."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def __deepcopy__(self, memo: dict) -> MixerState:
        """Clone the tensors (autograd history kept, unlike ``Tensor.__deepcopy__``): a branch to step on."""
        return dataclasses.replace(self, **{name: t.clone() for name, t in self.tensors().items()})


#: kept for callers that annotate with the old name
State = MixerState


class Mixer(nn.Module):
    """Base class for all token mixers: validation, padding, the causal guard and streaming plumbing.

    Attributes:
        d_model: feature size D.
        max_len: longest sequence (and last decoding position) accepted; beyond it is a ``ValueError``
            unless the mixer is :attr:`length_free`.
        causal: True means ``y[:, t]`` depends only on ``x[:, :t+1]``.
    """

    #: whether the mixer has a leak-free causal form (readable without building one)
    supports_causal: ClassVar[bool] = True
    #: whether the causal form can decode token by token (``init_state`` / ``step`` / ``prefill``)
    supports_streaming: ClassVar[bool] = True
    #: why a bidirectional-only mixer has no causal form (part of the error message)
    bidirectional_reason: ClassVar[str] = ""
    #: small option sets the registry-loop tests build this mixer with (``{}`` = the defaults)
    test_grid: ClassVar[tuple[dict[str, Any], ...]] = ({},)

    def __init__(self, d_model: int, max_len: int, causal: bool) -> None:
        super().__init__()
        if int(d_model) <= 0:
            raise ValueError(f"d_model must be a positive integer, got {d_model}")
        if int(max_len) <= 0:
            raise ValueError(f"max_len must be a positive integer, got {max_len}")
        if causal and not self.supports_causal:
            reason = f": {self.bidirectional_reason}" if self.bidirectional_reason else ""
            raise ValueError(
                f"{type(self).__name__} is bidirectional only{reason}. Build it with causal=False (e.g. in the "
                "Classifier); a causal LM needs a causal-capable mixer such as 'spectral' or 'summation'."
            )
        self.d_model = int(d_model)
        self.max_len = int(max_len)
        self.causal = bool(causal)

    @property
    def length_free(self) -> bool:
        """True when the mixer computes the same function at any length and its streaming state does not
        need ``max_len`` (no per-position table, nothing sized by ``max_len``): then sequences and decoding
        positions past ``max_len`` are accepted. False (the default) keeps ``max_len`` a hard bound."""
        return False

    def length_tie(self) -> str:
        """What ties this mixer to ``max_len`` and how to avoid it ('' when length-free); models quote it."""
        return "" if self.length_free else "it is defined only up to max_len"

    # ----------------------------------------------------------------------------------- parallel form
    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mix ``x: [B, T, D]``; ``padding_mask: [B, T]`` bool, True = real token."""
        return self._masked(self._mix, x, padding_mask)

    def reference(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The slow, obviously-correct form under the same contract as :meth:`forward` (for tests)."""
        return self._masked(self._reference, x, padding_mask)

    def _masked(self, fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor], x: torch.Tensor,
                padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Validate, zero the padded inputs, run ``fn``, zero the padded outputs."""
        self.check_input(x, padding_mask)
        if padding_mask is None:
            return fn(x, None)
        y = fn(zero_padded(x, padding_mask), padding_mask)
        return zero_padded(y, padding_mask)

    def _mix(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """The production form, on validated input whose padded positions are already zero."""
        raise NotImplementedError

    def _reference(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """The slow, obviously-correct form, on the same input as :meth:`_mix`."""
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
        if T > self.max_len and not self.length_free:
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
    def init_state(self, batch_size: int) -> MixerState:
        """The empty decoding state for ``batch_size`` sequences (causal, streaming-capable mixers only)."""
        self._require_streaming()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return self._init_state(batch_size)

    def step(self, x_t: torch.Tensor, state: MixerState) -> tuple[torch.Tensor, MixerState]:
        """Consume one token ``x_t: [B, D]``; return ``y_t: [B, D]`` equal to the parallel output there.

        A mixer may update the state's tensors in place when autograd is off: the state passed in is
        consumed (``copy.deepcopy`` it first to branch).
        """
        self._require_streaming()
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[-1] != self.d_model:
            shape = list(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise ValueError(f"{type(self).__name__}.step expects x_t of shape [B, D={self.d_model}], got {shape}")
        if not isinstance(state, MixerState):
            raise ValueError(f"{type(self).__name__}.step expects the state from init_state/prefill, "
                             f"got {type(state).__name__}")
        if state.pos >= self.max_len and not self.length_free:
            raise ValueError(f"decoding position {state.pos} reaches max_len={self.max_len}; "
                             "build the model with a larger max_len")
        return self._step(x_t, state)

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, MixerState]:
        """Run a whole prompt ``x: [B, T, D]`` and return ``(y, state)`` ready for :meth:`step`."""
        self._require_streaming()
        self.check_input(x)
        return self._prefill(x)

    def _require_streaming(self) -> None:
        if not self.supports_streaming:
            raise NotImplementedError(f"{type(self).__name__} does not support streaming decode")
        if not self.causal:
            raise NotImplementedError(
                f"a bidirectional {type(self).__name__} has no streaming form; build it with causal=True"
            )

    def _init_state(self, batch_size: int) -> MixerState:
        raise NotImplementedError(f"{type(self).__name__} does not support streaming decode")

    def _step(self, x_t: torch.Tensor, state: MixerState) -> tuple[torch.Tensor, MixerState]:
        raise NotImplementedError(f"{type(self).__name__} does not support streaming decode")

    def _prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, MixerState]:
        """Default: the prompt through :meth:`_step` one token at a time; override with a closed form."""
        state = self._init_state(x.shape[0])
        ys = []
        for t in range(x.shape[1]):
            y_t, state = self._step(x[:, t], state)
            ys.append(y_t)
        return torch.stack(ys, dim=1), state

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}, causal={self.causal}"
