"""Passkey retrieval as synthetic tokens (Landmark Attention's task, arXiv 2305.16300).

One sequence of ``length`` tokens::

    filler ... KEY d1 d2 d3 d4 d5 filler ... QUERY d1 d2 d3 d4
    |<-- depth * F -->|                |

The model must read the 5-digit key where it was stated and repeat it after the query marker. Token ids
(see :class:`PasskeyConfig`): the digits are ids ``0..9``, ``KEY`` is 10, ``QUERY`` is 11, filler tokens are
``12 .. 12 + n_filler - 1``. ``F = length - 2 * key_digits - 1`` filler tokens are split around the key
block (``KEY`` + digits): ``round(depth * F)`` before it, the rest after, so depth 0 puts ``KEY`` at
position 0 and depth 1 puts the key block right before ``QUERY``.

Targets follow the next-token convention of the language models (``logits[:, t]`` is scored against
``targets[:, t]``, the token at ``t + 1``): they are ``-100`` everywhere except at the last ``key_digits``
positions (the query marker and the digits after it), whose targets are the key digits ``d1 .. d5``: the
key_digits tokens after the query marker. Accuracy = fraction of those digits predicted right; chance is 1/10.

Filler: ``"random"`` draws every filler token uniformly from the filler ids; ``"sentence"`` repeats one
fixed "sentence" of ``sentence_len`` filler ids (Landmark's "The grass is green. The sky is blue...").
Each digit of the key is drawn uniformly from 0..9 (a leading 0 is allowed).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

DIGITS = 10
KEY_TOKEN = 10
QUERY_TOKEN = 11
FILLER0 = 12
IGNORE = -100
FILLERS = ("random", "sentence")


@dataclass(frozen=True)
class PasskeyConfig:
    """The vocabulary and filler of the passkey task.

    Attributes:
        key_digits: digits in the key (5 in Landmark Attention).
        n_filler: filler token ids (``FILLER0 .. FILLER0 + n_filler - 1``).
        filler: ``"random"`` (uniform filler tokens) or ``"sentence"`` (one fixed sentence, repeated).
        sentence_len: tokens in the repeated sentence (``filler="sentence"`` only; at most ``n_filler``).
    """

    key_digits: int = 5
    n_filler: int = 16
    filler: str = "random"
    sentence_len: int = 12

    @property
    def vocab_size(self) -> int:
        """Digits, the two markers and the filler ids."""
        return FILLER0 + self.n_filler

    def min_length(self) -> int:
        """The shortest sequence: key block + query marker + the digits fed after it, and one filler."""
        return 2 * self.key_digits + 1 + 1

    def validate(self) -> None:
        """``ValueError`` for a config no sequence can be made from."""
        if not isinstance(self.key_digits, int) or self.key_digits < 1:
            raise ValueError(f"key_digits must be a positive integer, got {self.key_digits!r}")
        if not isinstance(self.n_filler, int) or self.n_filler < 1:
            raise ValueError(f"n_filler must be a positive integer, got {self.n_filler!r}")
        if self.filler not in FILLERS:
            raise ValueError(f"filler must be one of {FILLERS}, got {self.filler!r}")
        if self.filler == "sentence" and not 1 <= self.sentence_len <= self.n_filler:
            raise ValueError(f"sentence_len must lie in [1, n_filler={self.n_filler}], got {self.sentence_len}")

    def sentence(self) -> torch.Tensor:
        """The fixed filler sentence (the same for every seed: a permutation of the first filler ids)."""
        perm = torch.randperm(self.n_filler, generator=torch.Generator().manual_seed(20230516))
        return FILLER0 + perm[: self.sentence_len]


def key_position(config: PasskeyConfig, length: int, depth: float) -> int:
    """Index of the ``KEY`` marker in a sequence of ``length`` tokens with the key at ``depth`` in [0, 1]."""
    filler = length - 2 * config.key_digits - 1
    return int(round(depth * filler))


def make_passkey(config: PasskeyConfig, n: int, length: int, depth: float | None = None,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` passkey sequences of ``length`` tokens: ``(inputs [n, length], targets [n, length])`` (long).

    ``depth`` in [0, 1] places the key block (0: at the start, 1: right before the query); ``None`` draws
    a depth uniformly per sequence (training). Deterministic in ``seed``. ``targets`` is ``-100`` except at
    the last ``key_digits`` positions, whose targets are the key digits (see the module docstring).
    """
    config.validate()
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n (sequences) must be a positive integer, got {n!r}")
    if not isinstance(length, int) or length < config.min_length():
        raise ValueError(f"length must be an integer >= {config.min_length()} (key block, query, digits and "
                         f"one filler token for key_digits={config.key_digits}), got {length!r}")
    if depth is not None and not 0.0 <= float(depth) <= 1.0:
        raise ValueError(f"depth must lie in [0, 1] (fraction of the filler before the key) or be None, got {depth}")
    gen = torch.Generator().manual_seed(int(seed))
    k = config.key_digits
    keys = torch.randint(0, DIGITS, (n, k), generator=gen)
    if config.filler == "random":
        seq = torch.randint(FILLER0, config.vocab_size, (n, length), generator=gen)
    else:
        sent = config.sentence()
        seq = sent.repeat(length // len(sent) + 1)[:length].unsqueeze(0).repeat(n, 1)
    depths = torch.rand(n, generator=gen) if depth is None else torch.full((n,), float(depth))
    query = length - k  # position of QUERY: it and the k - 1 digits after it close the sequence
    for i in range(n):
        at = key_position(config, length, float(depths[i]))
        seq[i, at] = KEY_TOKEN
        seq[i, at + 1: at + 1 + k] = keys[i]
    seq[:, query] = QUERY_TOKEN
    seq[:, query + 1:] = keys[:, : k - 1]
    targets = torch.full_like(seq, IGNORE)
    targets[:, query:] = keys
    return seq, targets


def digit_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of the target digits (``targets != -100``) that ``logits.argmax(-1)`` gets right."""
    mask = targets != IGNORE
    if not bool(mask.any()):
        raise ValueError("no target positions (every target is -100)")
    return float((logits.argmax(-1)[mask] == targets[mask]).float().mean())
