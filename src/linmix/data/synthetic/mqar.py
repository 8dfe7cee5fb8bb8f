"""Multi-query associative recall (MQAR) as synthetic tokens, with Zoology's semantics (arXiv 2312.04927).

One example of ``seq_len = T`` tokens with ``num_kv = kv`` key-value pairs::

    k1 v1 k2 v2 ... k_kv v_kv | slot slot slot ... (T - 2 kv positions, in (T - 2 kv) // 2 two-token slots)

Keys are drawn from the lower half of the vocabulary ``[1, V // 2)`` (id 0 is the filler), values from the
upper half ``[V // 2, V)``, both without replacement (distinct within an example). Every key is queried once
after the pairs: the query region holds ``(T - 2 kv) // 2`` two-token slots, and the query of each key
takes the first token of a slot; the slots are drawn without replacement from a power law
``p(g) ∝ a g^(a - 1)`` over ``g = 1 .. slots`` (``a = power_a``, 0.01 by default: queries crowd near the
pairs; ``a = 1`` is uniform). Every other position is filler: id 0, or with ``random_filler`` a token drawn
uniformly from the whole vocabulary (Zoology's ``random_non_queries``).

Targets follow the next-token convention of the language models (``logits[:, t]`` is scored against
``targets[:, t]``): ``-100`` everywhere except at the query positions, where the target is the queried key's
value. As in Zoology, the value is *not* written after the query in the input (the slot's second token is
filler): the only place a value appears in the input is right after its key in the pair prefix.

Worked example (``V = 12``, ``kv = 2``, ``T = 16``, filler 0; :func:`layout` builds it from its draws)::

    keys (2, 4), values (8, 7), query slots (2, 0) -> key 2 in slot 2, key 4 in slot 0
    position  0    1    2    3    4    5    6    7    8    9   10   11   12   13   14   15
    inputs    2    8    4    7    4    0    0    0    2    0    0    0    0    0    0    0
    targets -100 -100 -100 -100   7 -100 -100 -100   8 -100 -100 -100 -100 -100 -100 -100

Slot ``g`` starts at position ``2 kv + 2 g``. A fixed test set per generator config comes from
:func:`test_seed` (a hash of the config): the same config always gives the same test set, and a
training stream seeded otherwise never shares its seed.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import torch

IGNORE = -100
FILLER = 0


@dataclass(frozen=True)
class MQARConfig:
    """The generator: vocabulary ``vocab_size`` (V), length ``seq_len`` (T), ``num_kv`` pairs, power law ``a``."""

    vocab_size: int = 8192
    seq_len: int = 128
    num_kv: int = 8
    power_a: float = 0.01
    random_filler: bool = True

    def __post_init__(self) -> None:
        V, T, kv = self.vocab_size, self.seq_len, self.num_kv
        for name, value in (("vocab_size", V), ("seq_len", T), ("num_kv", kv)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"MQAR {name} must be a positive integer, got {value!r}")
        if kv > V // 2 - 1:
            raise ValueError(f"MQAR: {kv} distinct keys need V // 2 - 1 >= {kv} key ids (ids 1 .. V/2 - 1); "
                             f"vocab_size={V} has only {V // 2 - 1}")
        if kv > V - V // 2:
            raise ValueError(f"MQAR: {kv} distinct values need the upper half of the vocabulary to hold them; "
                             f"vocab_size={V} has {V - V // 2}")
        if T < 4 * kv:
            raise ValueError(f"MQAR: seq_len must be >= 4 * num_kv = {4 * kv} (the {2 * kv} pair tokens plus one "
                             f"two-token query slot per key), got seq_len={T}")
        if not self.power_a > 0:
            raise ValueError(f"MQAR power_a must be > 0 (1 = uniform query slots), got {self.power_a!r}")

    @property
    def slots(self) -> int:
        """Query slots after the pairs: ``(T - 2 kv) // 2``."""
        return (self.seq_len - 2 * self.num_kv) // 2

    def slot_probs(self) -> torch.Tensor:
        """``p(g) ∝ a g^(a - 1)`` for ``g = 1 .. slots`` (float64, sums to 1)."""
        g = torch.arange(1, self.slots + 1, dtype=torch.float64)
        p = self.power_a * g ** (self.power_a - 1)
        return p / p.sum()


def hashed_seed(config: MQARConfig, tag: str = "test") -> int:
    """The random seed of the fixed ``tag`` set of ``config`` (63-bit, from a SHA-256 of the config and the tag)."""
    text = json.dumps(asdict(config), sort_keys=True) + "|" + tag
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def test_seed(config: MQARConfig) -> int:
    """The random seed of the fixed test set of ``config``: ``hashed_seed(config, "test")``."""
    return hashed_seed(config, "test")


test_seed.__test__ = False  # not a pytest test, whatever imports it


def layout(config: MQARConfig, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor,
           filler: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lay out drawn ``keys``, ``values`` and query ``slots`` (each ``[n, kv]``) as ``(inputs, targets)``.

    Key ``i`` is queried at position ``2 kv + 2 slots[:, i]``. ``filler`` (``[n, T]``) replaces the filler
    positions (id 0) when given.
    """
    n, kv, T = keys.shape[0], config.num_kv, config.seq_len
    inputs = torch.full((n, T), FILLER, dtype=torch.long)
    inputs[:, 0:2 * kv:2], inputs[:, 1:2 * kv:2] = keys, values
    where = 2 * kv + 2 * slots.long()
    inputs.scatter_(1, where, keys.long())
    targets = torch.full((n, T), IGNORE, dtype=torch.long)
    targets.scatter_(1, where, values.long())
    if filler is not None:
        is_filler = torch.ones(n, T, dtype=torch.bool)
        is_filler[:, :2 * kv] = False
        is_filler.scatter_(1, where, False)
        inputs = torch.where(is_filler, filler, inputs)
    return inputs, targets


def _distinct(n: int, low: int, high: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """``[n, k]`` ids from ``[low, high)``, distinct within each row, in random order (uniform over such rows).

    Few ids out of many: uniform draws, rows with a repeat drawn again (rejection keeps it uniform); otherwise
    the top ``k`` of random scores over the whole range.
    """
    if 4 * k > high - low:
        return low + torch.rand(n, high - low, generator=gen).topk(k, dim=1).indices
    ids = torch.randint(low, high, (n, k), generator=gen)
    while True:
        sorted_ids = ids.sort(dim=1).values
        bad = (sorted_ids[:, 1:] == sorted_ids[:, :-1]).any(dim=1).nonzero().flatten()
        if bad.numel() == 0:
            return ids
        ids[bad] = torch.randint(low, high, (bad.numel(), k), generator=gen)


def make_mqar(config: MQARConfig, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` examples: ``inputs`` LongTensor ``[n, T]`` and ``targets`` ``[n, T]`` (-100 except at the queries).

    Deterministic in ``(config, n, seed)``; ``seed=test_seed(config)`` gives the config's fixed test set.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"MQAR: the number of examples must be an integer >= 0, got {n!r}")
    gen = torch.Generator().manual_seed(int(seed))
    V, kv = config.vocab_size, config.num_kv
    keys = _distinct(n, 1, V // 2, kv, gen)
    values = _distinct(n, V // 2, V, kv, gen)
    probs = config.slot_probs().float().expand(n, config.slots)
    slots = torch.multinomial(probs, kv, replacement=False, generator=gen) if n else keys.new_zeros(0, kv)
    filler = torch.randint(0, V, (n, config.seq_len), generator=gen) if config.random_filler else None
    return layout(config, keys, values, slots, filler)


def query_pairs(inputs: torch.Tensor, targets: torch.Tensor, num_kv: int) -> list[list[tuple[int, int]]]:
    """Per example, ``(query position, key position)`` for every scored position (the key's pair in the prefix)."""
    out = []
    for x, y in zip(inputs.tolist(), targets.tolist()):
        key_at = {x[2 * i]: 2 * i for i in range(num_kv)}
        out.append([(q, key_at[x[q]]) for q in range(len(y)) if y[q] != IGNORE])
    return out


def window_ceiling(inputs: torch.Tensor, targets: torch.Tensor, num_kv: int, window: int) -> float:
    """Fraction of queries whose pair lies in a causal window of ``window`` tokens ending at the query.

    The window of a query at ``q`` holds positions ``q - window < s <= q`` (``local_attention``'s). A pair
    (key at ``k``, value at ``k + 1``) counts when its value token is inside: ``q - (k + 1) < window``, the
    reach of a one-hop (induction-head) read from the last layer. 1.0 for any ``window >= T``.
    """
    pairs = [p for row in query_pairs(inputs, targets, num_kv) for p in row]
    if not pairs:
        return float("nan")
    return sum(q - (k + 1) < window for q, k in pairs) / len(pairs)
