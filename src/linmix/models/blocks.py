"""A residual block (mixer + feed-forward + norms) and the shared sequence encoder built from blocks."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from linmix.config import NORMS, ModelConfig
from linmix.mixers.registry import build_mixer
from linmix.ops.masking import zero_padded
from linmix.ops.sinusoidal import TABLE_SCALE, sinusoids
from linmix.mixers.registry import mixer_options as accepted_options
from linmix.models.spec import LayerSpec, parse_layer_specs

State = Any
#: positional schemes with a learned ``[max_len, D]`` table at the embedding
TABLE_POSITIONALS = ("learned", "multiplicative")
#: positional schemes defined at every length (``rotary`` lives in the mixers that take it)
LENGTH_FREE_POSITIONALS = ("none", "rotary", "sinusoidal")


def make_mixer(layer: str | LayerSpec, d_model: int, max_len: int, causal: bool, n_heads: int,
               mixer_options: dict[str, dict] | None, rotary: bool = False) -> nn.Module:
    """Build one layer's mixer: model-level ``mixer_options[name]``, overridden by the options written
    inline in the spec; ``n_heads`` goes to the mixers that take heads, and with ``rotary`` (the model's
    ``positional="rotary"``) ``rotary=True`` to the mixers that take it, unless an option sets them."""
    spec = layer if isinstance(layer, LayerSpec) else parse_layer_specs(layer)[0]
    opts = spec.merged((mixer_options or {}).get(spec.name))
    accepted = accepted_options(spec.name)
    if "n_heads" in accepted:
        opts.setdefault("n_heads", n_heads)
    if rotary and "rotary" in accepted:
        opts.setdefault("rotary", True)
    return build_mixer(spec.name, d_model=d_model, max_len=max_len, causal=causal, **opts)


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(D, mult*D) -> GELU -> Linear(mult*D, D)."""

    def __init__(self, d_model: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, mult * d_model), nn.GELU(), nn.Linear(mult * d_model, d_model), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    """Mixer + feed-forward, each with a residual and a LayerNorm.

    ``norm="pre"`` (default, stable for deep stacks): ``x + mixer(norm(x))``; ``norm="post"`` (as the
    summation papers used): ``norm(x + mixer(x))``. ``ffn_mult=0`` drops the feed-forward.
    """

    def __init__(self, mixer: str | LayerSpec, d_model: int, max_len: int, causal: bool, n_heads: int = 4,
                 ffn_mult: int = 4, norm: str = "pre", dropout: float = 0.0,
                 mixer_options: dict[str, dict] | None = None, rotary: bool = False) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.norm_kind = norm
        self.mixer = make_mixer(mixer, d_model, max_len, causal, n_heads, mixer_options, rotary)
        self.norm1 = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.ffn = FeedForward(d_model, ffn_mult, dropout) if ffn_mult > 0 else None
        self.norm2 = nn.LayerNorm(d_model) if ffn_mult > 0 else None

    def _mix_residual(self, x: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
        return x + self.drop(mixed) if self.norm_kind == "pre" else self.norm1(x + self.drop(mixed))

    def _ffn_residual(self, x: torch.Tensor) -> torch.Tensor:
        if self.ffn is None:
            return x
        if self.norm_kind == "pre":
            return x + self.ffn(self.norm2(x))
        return self.norm2(x + self.ffn(x))

    def _mixer_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm1(x) if self.norm_kind == "pre" else x

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self._mix_residual(x, self.mixer(self._mixer_input(x), padding_mask=padding_mask))
        return self._ffn_residual(x)

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, State]:
        mixed, state = self.mixer.prefill(self._mixer_input(x))
        return self._ffn_residual(self._mix_residual(x, mixed)), state

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        mixed, state = self.mixer.step(self._mixer_input(x_t), state)
        return self._ffn_residual(self._mix_residual(x_t, mixed)), state


class SequenceEncoder(nn.Module):
    """Token embedding + positional scheme + a stack of blocks (or bare mixers) + a final norm.

    Built from a resolved :class:`~linmix.config.ModelConfig` (``vocab_size`` and ``max_len`` may be
    overridden, e.g. for a classifier's extra CLS token). Positional schemes: ``learned`` adds a learned
    ``[max_len, D]`` table; ``multiplicative`` computes ``e * (P + 1)`` with such a table, as in the summation
    papers; ``sinusoidal`` adds fixed sinusoids (:mod:`linmix.ops.sinusoidal`, RMS 0.02, the scale a table
    starts at), defined at every position; ``rotary`` adds nothing at the embedding and builds every mixer
    that takes a ``rotary`` option with ``rotary=True`` (unless its spec or ``mixer_options`` sets it);
    ``none`` leaves order to the mixers. ``arch="bare"`` stacks the mixers directly, with no residual,
    feed-forward or norm: the summation papers' single-layer classifiers (embedding -> mixer -> pool).

    :attr:`length_free`: no table at the embedding and every mixer length-free; such an encoder accepts
    sequences and decoding positions past ``max_len``.
    """

    def __init__(self, cfg: ModelConfig, causal: bool, vocab_size: int | None = None,
                 max_len: int | None = None) -> None:
        super().__init__()
        vocab_size = cfg.vocab_size if vocab_size is None else vocab_size
        max_len = cfg.max_len if max_len is None else max_len
        d_model = cfg.d_model
        _check_positive(vocab_size=vocab_size, d_model=d_model, max_len=max_len, n_heads=cfg.n_heads)
        self.vocab_size, self.d_model, self.max_len = vocab_size, d_model, max_len
        self.layer_specs = parse_layer_specs(cfg.layers)
        self.layer_names = [spec.name for spec in self.layer_specs]
        self.positional, self.arch = cfg.positional, cfg.arch
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        table = cfg.positional in TABLE_POSITIONALS
        self.pos = nn.Parameter(torch.randn(max_len, d_model) * 0.02) if table else None
        rotary = cfg.positional == "rotary"
        if cfg.arch == "block":
            self.layers = nn.ModuleList(
                Block(spec, d_model, max_len, causal, cfg.n_heads, cfg.ffn_mult, cfg.norm, cfg.dropout,
                      cfg.mixer_options, rotary)
                for spec in self.layer_specs
            )
            self.final_norm = nn.LayerNorm(d_model) if cfg.norm == "pre" else nn.Identity()
        else:
            self.layers = nn.ModuleList(
                make_mixer(spec, d_model, max_len, causal, cfg.n_heads, cfg.mixer_options, rotary)
                for spec in self.layer_specs
            )
            self.final_norm = nn.Identity()
        self.drop = nn.Dropout(cfg.dropout)

    @property
    def mixers(self) -> list[nn.Module]:
        """Every layer's mixer, in order."""
        return [layer.mixer if isinstance(layer, Block) else layer for layer in self.layers]

    @property
    def length_free(self) -> bool:
        """True when nothing is sized by ``max_len``: a positional scheme without a table and length-free
        mixers only. Then sequences and decoding positions past ``max_len`` are accepted."""
        return self.positional in LENGTH_FREE_POSITIONALS and all(m.length_free for m in self.mixers)

    def length_ties(self) -> list[str]:
        """What ties the encoder to ``max_len`` (empty when :attr:`length_free`), one phrase each."""
        ties = [f"positional={self.positional!r} (a [max_len, D] table at the embedding)"
                ] if self.positional not in LENGTH_FREE_POSITIONALS else []
        layers: dict[tuple[str, str], list[str]] = {}  # layers tied the same way are named together
        for i, (name, mixer) in enumerate(zip(self.layer_names, self.mixers)):
            if not mixer.length_free:
                layers.setdefault((name, mixer.length_tie()), []).append(str(i))
        return ties + [f"layer{'s' if len(ids) > 1 else ''} {', '.join(ids)} ({name}): {why}"
                       for (name, why), ids in layers.items()]

    def check_ids(self, ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> None:
        """``ValueError`` for a wrong rank/dtype, an out-of-vocabulary id, or a sequence over max_len (unless
        the encoder is :attr:`length_free`)."""
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype not in (torch.long, torch.int32):
            shape = list(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids must be an integer tensor of shape [B, T], got {shape}")
        if ids.shape[1] > self.max_len and not self.length_free:
            raise ValueError(
                f"sequence length {ids.shape[1]} exceeds max_len={self.max_len}; "
                f"build the model with max_len >= {ids.shape[1]} or truncate the input"
            )
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {self.vocab_size}); got min {int(ids.min())}, max {int(ids.max())}"
                " - is the tokenizer the one the model was built for?"
            )
        if padding_mask is not None and (padding_mask.shape != ids.shape or padding_mask.dtype != torch.bool):
            raise ValueError(
                f"padding_mask must be a bool tensor of shape {list(ids.shape)} (True = real token), "
                f"got {padding_mask.dtype} {list(padding_mask.shape)}"
            )

    def embed_tokens(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Token embeddings with the positional scheme applied for positions ``offset .. offset+T-1``."""
        x = self.embed(ids)
        if self.pos is not None:
            p = self.pos[offset : offset + ids.shape[1]]
            x = x + p if self.positional == "learned" else x * (p + 1.0)
        elif self.positional == "sinusoidal":
            x = x + TABLE_SCALE * sinusoids(offset, ids.shape[1], self.d_model, x.dtype, x.device)
        return self.drop(x)

    def forward(self, ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        self.check_ids(ids, padding_mask)
        x = self.embed_tokens(ids)
        if self.arch == "block":  # a bare stack's first mixer masks its input itself
            x = _keep_real(x, padding_mask)
        for layer in self.layers:
            x = layer(x, padding_mask=padding_mask)
        return self.final_norm(x)

    def prefill(self, ids: torch.Tensor) -> tuple[torch.Tensor, list[State]]:
        """Parallel pass over a prompt that also returns each layer's streaming state."""
        self.check_ids(ids)
        x = self.embed_tokens(ids)
        states = []
        for layer in self.layers:
            x, state = layer.prefill(x)
            states.append(state)
        return self.final_norm(x), states

    def step(self, ids_t: torch.Tensor, states: list[State], position: int) -> tuple[torch.Tensor, list[State]]:
        """One token per sequence (``ids_t: [B]``) at ``position``; returns the final hidden ``[B, D]``."""
        if position >= self.max_len and not self.length_free:
            raise ValueError(f"decoding position {position} reaches max_len={self.max_len}; the model is tied "
                             f"to it by {'; '.join(self.length_ties())}")
        x = self.embed_tokens(ids_t.unsqueeze(1), offset=position).squeeze(1)
        new_states = []
        for layer, state in zip(self.layers, states):
            x, state = layer.step(x, state)
            new_states.append(state)
        return self.final_norm(x), new_states


def _keep_real(x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded rows of the embeddings (by selection: whatever they held, NaN included, gets no
    gradient). Every mixer masks its own input and output, so later layers see padded rows that are finite
    and receive zero gradient there; this one selection keeps a non-finite padded embedding from turning the
    position-wise layers' parameter gradients into NaN."""
    return zero_padded(x, padding_mask)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
