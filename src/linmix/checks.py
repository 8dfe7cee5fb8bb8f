"""Small value checks shared by the configs: each raises a ``ValueError`` that names the field."""
from __future__ import annotations

import math
from typing import Any


def is_finite(x: Any) -> bool:
    """A real number (not a bool) that is neither inf nor NaN."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_positive(**values: Any) -> None:
    """Every given value is ``None`` or a positive integer."""
    for name, value in values.items():
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    """``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def check_int_at_least(name: str, value: Any, low: int, note: str = "") -> None:
    """An integer (not a bool) ``>= low``; ``note`` explains a special value, e.g. "0 = off"."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        kind = "positive" if low == 1 else "non-negative" if low == 0 else f">= {low}"
        raise ValueError(f"{name} must be a {kind} integer{f' ({note})' if note else ''}, got {value!r}")


def check_range(name: str, value: Any, low: float, high: float = math.inf, *, high_open: bool = False,
                note: str = "") -> None:
    """A finite number in ``[low, high]`` (``[low, high)`` with ``high_open``)."""
    inside = is_finite(value) and low <= value and (value < high if high_open else value <= high)
    if not inside:
        where = (f"must be >= {low:g}" if high == math.inf
                 else f"must lie in [{low:g}, {high:g}{')' if high_open else ']'}")
        raise ValueError(f"{name} {where}{f' ({note})' if note else ''}, got {value!r}")
