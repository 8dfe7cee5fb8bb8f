"""Name -> mixer class registry.

A mixer module registers its class with :func:`register`; ``linmix.mixers`` imports every mixer module so
the registry is complete on ``import linmix``. Adding a mixer = one new file + one import line. A class is
its own factory (``MIXERS[name](d_model=..., max_len=..., causal=..., **options)``), and its options are
declared once, as the keyword parameters of its ``__init__`` after ``(d_model, max_len, causal)``.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from linmix.mixers.base import Mixer

MixerClass = type[Mixer]
#: the positional arguments every mixer takes; everything after them is an option
BASE_PARAMETERS = ("self", "d_model", "max_len", "causal")


class _Registry(Mapping[str, MixerClass]):
    """A read-only mapping for users; :func:`register` / :func:`unregister` are the only ways in and out."""

    def __init__(self) -> None:
        self._classes: dict[str, MixerClass] = {}

    def __getitem__(self, name: str) -> MixerClass:
        return self._classes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"MIXERS({', '.join(self._classes)})"


MIXERS = _Registry()


def register(name: str) -> Callable[[MixerClass], MixerClass]:
    """Class decorator that registers a :class:`Mixer` subclass under ``name``."""

    def decorate(cls: MixerClass) -> MixerClass:
        if not (isinstance(cls, type) and issubclass(cls, Mixer)):
            raise TypeError(f"register({name!r}) takes a Mixer subclass, got {cls!r}")
        if name in MIXERS._classes:
            raise ValueError(f"mixer {name!r} is already registered")
        MIXERS._classes[name] = cls
        return cls

    return decorate


def unregister(name: str) -> MixerClass:
    """Remove ``name`` from the registry (tests, plugins) and return its class."""
    check_mixer_name(name)
    return MIXERS._classes.pop(name)


@contextmanager
def registered(cls: MixerClass, name: str) -> Iterator[MixerClass]:
    """Register ``cls`` as ``name`` for the duration of a ``with`` block, then remove it again."""
    register(name)(cls)
    try:
        yield cls
    finally:
        unregister(name)


def check_mixer_name(name: str) -> None:
    """Raise ``ValueError`` listing the registered names when ``name`` is unknown."""
    if name not in MIXERS:
        raise ValueError(
            f"unknown mixer {name!r}; registered mixers are: {', '.join(sorted(MIXERS))}"
        )


def mixer_options(name: str) -> dict[str, Any]:
    """``{option: default}`` for the options the mixer's ``__init__`` takes beyond (d_model, max_len, causal).

    An option without a default maps to :data:`inspect.Parameter.empty`.
    """
    check_mixer_name(name)
    params = inspect.signature(MIXERS[name].__init__).parameters.values()
    return {p.name: p.default for p in params
            if p.name not in BASE_PARAMETERS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_mixer(name: str, d_model: int = 256, max_len: int = 1024, causal: bool = True, **options) -> Mixer:
    """Build the mixer registered as ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered ones), an option the mixer does not
            take (the message names the mixer and lists the ones it does), or a causal request to a
            bidirectional-only mixer.
    """
    check_mixer_name(name)
    allowed = mixer_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        accepted = ", ".join(f"{k}={v!r}" for k, v in sorted(allowed.items())) or "none"
        raise ValueError(f"mixer {name!r} does not take option(s) {unknown}; it accepts: {accepted}")
    return MIXERS[name](d_model=d_model, max_len=max_len, causal=causal, **options)
