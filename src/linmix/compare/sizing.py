"""Size candidates to one parameter budget, so a comparison measures the mixer and not the model size."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

TOLERANCE = 0.10


def count_params(model: nn.Module) -> int:
    """Trainable parameters, counting tied tensors once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def size_to_budget(build: Callable[[int], nn.Module], target: int, multiple: int = 8,
                   lo: int = 8, hi: int = 4096) -> tuple[int, int]:
    """Pick the ``d_model`` (a multiple of ``multiple``) whose model's parameter count is closest to ``target``.

    ``build(d_model)`` constructs the candidate. Parameter counts grow with ``d_model``, so a binary search
    finds the bracketing sizes and the closer of the two wins. Returns ``(d_model, params)``.
    """
    lo, hi = max(multiple, lo - lo % multiple), hi - hi % multiple
    cache: dict[int, int] = {}

    def params(d: int) -> int:
        if d not in cache:
            cache[d] = count_params(build(d))
        return cache[d]

    while hi - lo > multiple:
        mid = (lo + hi) // 2
        mid -= mid % multiple
        if params(mid) < target:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda d: abs(params(d) - target))
    return best, params(best)


def within_budget(params: int, target: int, tolerance: float = TOLERANCE) -> bool:
    """True when ``params`` lies within ``tolerance`` (relative) of ``target``."""
    return abs(params - target) <= tolerance * target
