"""Configs in and out of files, and the command-line flags that override their fields.

A config file is TOML (``.toml``) or JSON (``.json``) holding the sections of a
:class:`~linmix.config.TrainConfig` (``task``, ``[model]``, ``[data]``, ``[optim]``, ``[run]``) or of a
:class:`~linmix.config.CompareConfig` (its ``[base]`` plus ``candidates``, ``seeds``, ``lrs``...). On the
command line every field with a help text is a flag twice: by its bare name (``--lr``) and by its dotted
path (``--optim.lr``); flags override the file, which overrides the task's defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from linmix.config import SECTIONS, TASK_DEFAULTS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The table in a ``.toml`` or ``.json`` file; ``FileNotFoundError``/``ValueError`` say what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix == ".json":
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"{path} must hold a JSON object of config sections")
            return data
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid {path.suffix[1:].upper()} ({err})") from None
    raise ValueError(f"config file {path} must end in .toml or .json")


def write_config_file(data: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a nested config dict as TOML or JSON (by suffix), atomically. ``None`` values are left out of
    TOML (it has no null); reading the file back gives them their defaults again."""
    path = Path(path)
    text = to_toml(data) if path.suffix == ".toml" else json.dumps(data, indent=2, sort_keys=True) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for config trees: scalars, lists of scalars and nested tables."""
    scalars = [f"{_toml_key(key)} = {_toml_value(v)}" for key, v in data.items()
               if not isinstance(v, dict) and v is not None]
    tables = [(key, v) for key, v in data.items() if isinstance(v, dict)]
    parts = ["\n".join(scalars)] if scalars else []
    for key, value in tables:
        name = f"{prefix}{_toml_key(key)}"
        body = to_toml(value, f"{name}.")
        parts.append(f"[{name}]\n{body}" if body and not body.startswith("[") else f"[{name}]\n" + body)
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} {value!r} to TOML")


# ------------------------------------------------------------------------------------------- flags
def flag_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """``{"optim.lr": ("lr", field), ...}``: the section fields that are command-line flags."""
    out: dict[str, tuple[str, dataclasses.Field]] = {}
    for section, kind in SECTIONS.items():
        for f in dataclasses.fields(kind):
            if "help" in f.metadata:
                out[f"{section}.{f.name}"] = (f.name, f)
    return out


def value_parser(f: dataclasses.Field) -> Any:
    """The argparse ``type`` for a field, read from its annotation (``int | None`` -> int)."""
    annotation = str(f.type)
    if "int" in annotation and "float" not in annotation:
        return int
    if "float" in annotation:
        return float
    if "bool" in annotation:
        return parse_bool
    return str


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_flags(parser: argparse.ArgumentParser, task: str | None = None,
                     skip: tuple[str, ...] = ()) -> None:
    """Add ``--config FILE`` and one flag per config field (``--lr`` and ``--optim.lr``) to ``parser``.

    Every flag defaults to ``None`` (not given), so only what the user typed overrides the config. The help
    text shows the task's default when ``task`` is given.
    """
    parser.add_argument("--config", metavar="FILE", help="a TOML or JSON config file (flags override it)")
    seen: set[str] = set()
    for dotted, (name, f) in flag_fields().items():
        if dotted in skip or name in skip:
            continue
        flags = [f"--{dotted}"]
        bare = f"--{name.replace('_', '-')}"
        if name not in seen:
            flags.insert(0, bare)
            seen.add(name)
        section = dotted.split(".")[0]
        default = TASK_DEFAULTS.get(task or "", {}).get(section, {}).get(name, f.default)
        shown = "" if default in (None, dataclasses.MISSING) else f" (default {default})"
        choices = f.metadata.get("choices")
        parser.add_argument(*flags, dest=_dest(dotted), type=value_parser(f), default=None, choices=choices,
                            metavar=None if choices else _metavar(f), help=f.metadata["help"] + shown)


def _metavar(f: dataclasses.Field) -> str:
    kind = value_parser(f)
    return {int: "N", float: "X"}.get(kind, "TEXT")


def _dest(dotted: str) -> str:
    return "cfg__" + dotted.replace(".", "__")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``{"optim.lr": 0.003}`` for every config flag the user gave."""
    out = {}
    for dotted in flag_fields():
        value = getattr(args, _dest(dotted), None)
        if value is not None:
            out[dotted] = value
    return out
