"""Save and load models as ``model.safetensors`` + ``config.json``; nothing is ever unpickled."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

from safetensors.torch import load_model, save_model

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
_MODELS: dict[str, type] = {}
M = TypeVar("M", bound="PretrainedMixin")


class PretrainedMixin:
    """Gives a model ``save_pretrained`` / ``from_pretrained``.

    A subclass stores its constructor arguments in ``self.config`` (plain JSON types); loading rebuilds the
    model from them and loads the weights with ``strict=True``. Tied weights are handled by safetensors.
    """

    config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _MODELS[cls.__name__] = cls

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write weights and config into directory ``path`` (created if needed); atomic per file."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / (WEIGHTS + ".tmp")
        save_model(self, str(tmp))  # type: ignore[arg-type]
        os.replace(tmp, path / WEIGHTS)
        from linmix import __version__

        config = {"model_type": type(self).__name__, "linmix_version": __version__, **self.config}
        write_json_atomic(path / CONFIG, config)
        return path

    @classmethod
    def from_pretrained(cls: type[M], path: str | os.PathLike, map_location: str = "cpu") -> M:
        """Rebuild a saved model. ``ValueError``/``FileNotFoundError`` say what is missing or mismatched."""
        config = read_config(path)
        model_type = config.pop("model_type")
        config.pop("linmix_version", None)
        target = _MODELS.get(model_type)
        if target is None:
            raise ValueError(f"{path} holds an unknown model_type {model_type!r}; known: {', '.join(_MODELS)}")
        if cls is not PretrainedMixin and not issubclass(target, cls):
            raise ValueError(
                f"{path} holds a {model_type}, not a {cls.__name__}; load it with linmix.{model_type}.from_pretrained"
            )
        model = target(**config)
        load_model(model, str(Path(path) / WEIGHTS), strict=True, device=map_location)
        return model  # type: ignore[return-value]


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``config.json`` of a saved model directory, with clear errors for anything that is not one."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory; pass the folder written by save_pretrained")
    missing = [name for name in (CONFIG, WEIGHTS) if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a saved linmix model: missing {', '.join(missing)}")
    try:
        config = json.loads((path / CONFIG).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path / CONFIG} is not valid JSON ({err})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ValueError(f"{path / CONFIG} has no model_type; it was not written by linmix")
    return config


def load_pretrained(path: str | os.PathLike, map_location: str = "cpu") -> Any:
    """Load any saved linmix model, whatever its class."""
    return PretrainedMixin.from_pretrained.__func__(PretrainedMixin, path, map_location)  # type: ignore[attr-defined]


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp file and rename it over ``path``: a crash never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
