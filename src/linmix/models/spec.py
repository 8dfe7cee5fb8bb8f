"""Layer specs: ``"summation*3,local_attention(window=64)"`` -> one :class:`LayerSpec` per layer.

Grammar (whitespace is ignored)::

    spec    := layer ("," layer)*
    layer   := name ["(" option ("," option)* ")"] ["*" N]
    option  := key "=" value          value: int, float, true/false, none, or a (quoted or bare) string

So ``"spectral(kernel=implicit)*4"`` is four spectral layers built with ``kernel="implicit"``. The same
string works in Python, in ``linmix train``, ``linmix compare`` and ``linmix bench``. Unknown mixer names
and unknown options are a ``ValueError`` naming the mixer and what it accepts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from linmix.mixers.registry import check_mixer_name, mixer_options

_LAYER = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?:\((?P<opts>.*)\))?\s*(?:\*\s*(?P<n>[^*]*))?$", re.S)
EXAMPLE = "e.g. 'summation*3,local_attention(window=64)'"


@dataclass(frozen=True)
class LayerSpec:
    """One layer: a registered mixer name and the options written inline for it."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def check(self, extra: dict[str, Any] | None = None) -> None:
        """``ValueError`` naming the mixer and its accepted options when an option is not one of them."""
        check_mixer_name(self.name)
        accepted = mixer_options(self.name)
        unknown = sorted(k for k in {**(extra or {}), **self.options} if k not in accepted)
        if unknown:
            listed = ", ".join(sorted(accepted)) or "none"
            raise ValueError(f"mixer {self.name!r} does not take option(s) {unknown}; it accepts: {listed}")

    def merged(self, extra: dict[str, Any] | None) -> dict[str, Any]:
        """Model-level options for this mixer, overridden by the inline ones."""
        return {**(extra or {}), **self.options}

    def __str__(self) -> str:
        if not self.options:
            return self.name
        defaults = mixer_options(self.name)
        text = ",".join(f"{k}={format_value(v, isinstance(defaults.get(k), str))}" for k, v in self.options.items())
        return f"{self.name}({text})"


def parse_layer_specs(spec: str | list | tuple) -> list[LayerSpec]:
    """Expand a layer spec into one :class:`LayerSpec` per layer (names checked, options checked).

    A list or tuple may hold layer strings (each parsed like one comma-separated part) or LayerSpecs.
    """
    if isinstance(spec, (list, tuple)):
        parts: list[Any] = list(spec)
    elif isinstance(spec, str):
        parts = split_top_level(spec)
    else:
        raise ValueError(f"layers must be a spec string {EXAMPLE}, got {type(spec).__name__}")
    if not parts:
        raise ValueError(f"empty layer spec; {EXAMPLE}")
    layers: list[LayerSpec] = []
    for part in parts:
        if isinstance(part, LayerSpec):
            part.check()
            layers.append(part)
            continue
        layers.extend(_parse_layer(str(part), spec))
    return layers


def parse_layers(spec: str | list | tuple) -> list[str]:
    """The mixer name of every layer: ``"summation*3,attention"`` -> ``[summation x3, attention]``."""
    return [layer.name for layer in parse_layer_specs(spec)]


def format_layers(layers: list[LayerSpec] | list[str]) -> str:
    """Inverse of :func:`parse_layer_specs`, compressing runs: ``[a, a, b]`` -> ``"a*2,b"``."""
    texts = [str(layer) for layer in layers]
    out: list[str] = []
    i = 0
    while i < len(texts):
        j = i
        while j < len(texts) and texts[j] == texts[i]:
            j += 1
        out.append(texts[i] if j - i == 1 else f"{texts[i]}*{j - i}")
        i = j
    return ",".join(out)


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses and quotes; ``ValueError`` on unbalanced parentheses."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ')' in layer spec {text!r}; {EXAMPLE}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if depth or quote:
        raise ValueError(f"unclosed {'quote' if quote else '('} in layer spec {text!r}; {EXAMPLE}")
    parts.append(text[start:].strip())
    return parts


def _parse_layer(part: str, whole: Any) -> list[LayerSpec]:
    if not part:
        raise ValueError(f"empty layer in spec {whole!r}; write names separated by commas, {EXAMPLE}")
    match = _LAYER.match(part.strip())
    if match is None:
        raise ValueError(f"cannot read layer {part!r} in spec {whole!r}; write name(option=value)*N, {EXAMPLE}")
    name = match["name"]
    check_mixer_name(name)
    options = _parse_options(match["opts"], part, mixer_options(name)) if match["opts"] is not None else {}
    layer = LayerSpec(name, options)
    layer.check()
    return [layer] * _repeat(match["n"], part)


def _repeat(text: str | None, part: str) -> int:
    if text is None:
        return 1
    try:
        repeat = int(text.strip())
    except ValueError:
        raise ValueError(f"bad repeat {text.strip()!r} in layer {part!r}; write e.g. 'summation*3'") from None
    if repeat < 1:
        raise ValueError(f"repeat count must be >= 1 in layer {part!r}")
    return repeat


def _parse_options(text: str, part: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """``key=value`` pairs. A bare value of an option whose default is a string stays a string
    (``normalize=none`` is ``"none"``); any other bare value is read by :func:`parse_value`."""
    options: dict[str, Any] = {}
    if not text.strip():
        return options
    for item in split_top_level(text):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise ValueError(f"bad option {item!r} in layer {part!r}; write key=value, e.g. window=64")
        if key in options:
            raise ValueError(f"option {key!r} given twice in layer {part!r}")
        value = value.strip()
        quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
        options[key] = value if isinstance(defaults.get(key), str) and not quoted else parse_value(value)
    return options


def parse_value(text: str) -> Any:
    """``"64"`` -> 64, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"none"`` -> None, ``"'a'"``/``"a"`` -> "a"."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def format_value(value: Any, string_option: bool = False) -> str:
    """Inverse of the option parser: ``string_option`` (the option's default is a string) writes a plain
    word such as ``none`` bare, since such an option reads bare words as strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str) and ((not string_option and parse_value(value) != value) or value != value.strip()
                                   or any(ch in value for ch in _SPECIAL)):
        quote = "'" if "'" not in value else '"'
        if quote in value:  # the grammar has no escapes
            raise ValueError(f"cannot write {value!r} in a layer spec: it holds both kinds of quote")
        return f"{quote}{value}{quote}"
    return str(value)


#: characters of the grammar: a string option holding one is written quoted
_SPECIAL = ",()'\"=*"
