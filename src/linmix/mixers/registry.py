"""Name -> factory registry of token mixers.

A mixer module registers itself with :func:`register`; ``linmix.mixers`` imports every mixer module so
the registry is complete on ``import linmix``. Adding a mixer = one new file + one import line.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping

from torch import nn

Factory = Callable[..., nn.Module]


class _Registry(Mapping[str, Factory]):
    """A read-only mapping for users; :func:`register` is the only way in."""

    def __init__(self) -> None:
        self._factories: dict[str, Factory] = {}

    def __getitem__(self, name: str) -> Factory:
        return self._factories[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    def __repr__(self) -> str:
        return f"MIXERS({', '.join(self._factories)})"


MIXERS = _Registry()


def register(name: str) -> Callable[[Factory], Factory]:
    """Class/function decorator that registers a mixer factory under ``name``."""

    def decorate(factory: Factory) -> Factory:
        if name in MIXERS._factories:
            raise ValueError(f"mixer {name!r} is already registered")
        MIXERS._factories[name] = factory
        return factory

    return decorate


def check_mixer_name(name: str) -> None:
    """Raise ``ValueError`` listing the registered names when ``name`` is unknown."""
    if name not in MIXERS:
        raise ValueError(
            f"unknown mixer {name!r}; registered mixers are: {', '.join(sorted(MIXERS))}"
        )


def mixer_options(name: str) -> set[str]:
    """The keyword options a mixer's factory accepts beyond (d_model, max_len, causal)."""
    check_mixer_name(name)
    params = inspect.signature(MIXERS[name]).parameters
    return {p for p in params if p not in ("self", "d_model", "max_len", "causal")}


def build_mixer(name: str, d_model: int = 256, max_len: int = 1024, causal: bool = True, **options) -> nn.Module:
    """Build the mixer registered as ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered ones), an option the mixer does not
            take (the message lists the ones it does), or a causal request to a bidirectional-only mixer.
    """
    check_mixer_name(name)
    allowed = mixer_options(name)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"mixer {name!r} does not take option(s) {unknown}; it accepts: {', '.join(sorted(allowed)) or 'none'}"
        )
    return MIXERS[name](d_model=d_model, max_len=max_len, causal=causal, **options)
