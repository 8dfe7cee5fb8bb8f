"""Layer specs: ``"summation*3,attention"`` -> ``["summation", "summation", "summation", "attention"]``."""
from __future__ import annotations

from linmix.mixers.registry import check_mixer_name


def parse_layers(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """Expand a layer spec into one mixer name per layer.

    Names are separated by commas; ``name*N`` repeats a name N times; whitespace is ignored. A list or tuple
    of names is accepted as is. Every name must be registered (``ValueError`` lists the registered ones).
    """
    if isinstance(spec, (list, tuple)):
        parts = list(spec)
    elif isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",")]
    else:
        raise ValueError(f"layers must be a spec string like 'summation*3,attention', got {type(spec).__name__}")
    names: list[str] = []
    for part in parts:
        if not part:
            raise ValueError(f"empty layer in spec {spec!r}; write names separated by commas, e.g. 'summation*3,attention'")
        name, _, count = part.partition("*")
        name = name.strip()
        repeat = 1
        if count:
            try:
                repeat = int(count)
            except ValueError:
                raise ValueError(f"bad repeat {count!r} in layer {part!r}; write e.g. 'summation*3'") from None
            if repeat < 1:
                raise ValueError(f"repeat count must be >= 1 in layer {part!r}")
        check_mixer_name(name)
        names.extend([name] * repeat)
    return names


def format_layers(names: list[str]) -> str:
    """Inverse of :func:`parse_layers`, compressing runs: ``["a", "a", "b"]`` -> ``"a*2,b"``."""
    out: list[str] = []
    i = 0
    while i < len(names):
        j = i
        while j < len(names) and names[j] == names[i]:
            j += 1
        out.append(names[i] if j - i == 1 else f"{names[i]}*{j - i}")
        i = j
    return ",".join(out)
