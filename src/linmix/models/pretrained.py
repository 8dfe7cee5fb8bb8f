"""Save and load models as ``model.safetensors`` + ``config.json``; nothing is ever unpickled."""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from linmix.config import ModelConfig

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
_MODELS: dict[str, type] = {}
M = TypeVar("M", bound="PretrainedMixin")


class PretrainedMixin:
    """Gives a model ``from_config``, ``save_pretrained`` and ``from_pretrained``.

    A subclass keeps its resolved :class:`~linmix.config.ModelConfig` in ``self.config`` and takes the
    config's fields as constructor keywords; saving writes that config as ``config.json`` (plus
    ``model_type``: :attr:`saved_model_type`, or the class name, and ``architectures`` when the class
    names transformers classes that load it) and the weights as safetensors; loading rebuilds the model
    from the config and loads the weights with ``strict=True``. Tied weights are handled by safetensors.
    """

    config: ModelConfig
    #: the ``model_type`` written to config.json (None: the class name); transformers reads it too
    saved_model_type: ClassVar[str | None] = None
    #: transformers classes that load the saved folder (``architectures`` in config.json; see linmix.hf)
    architectures: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _MODELS[cls.__name__] = cls
        if cls.__dict__.get("saved_model_type"):
            _MODELS[cls.__dict__["saved_model_type"]] = cls

    @classmethod
    def from_config(cls: type[M], config: ModelConfig) -> M:
        """A freshly initialised model of this class built from ``config``."""
        params = inspect.signature(cls.__init__).parameters
        return cls(**{name: getattr(config, name) for name in params if name != "self"})

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write weights and config into directory ``path`` (created if needed); atomic per file."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / (WEIGHTS + ".tmp")
        save_model(self, str(tmp))  # type: ignore[arg-type]
        os.replace(tmp, path / WEIGHTS)
        from linmix import __version__

        header: dict[str, Any] = {"model_type": type(self).saved_model_type or type(self).__name__,
                                  "linmix_version": __version__}
        if type(self).architectures:
            header["architectures"] = list(type(self).architectures)
        write_json_atomic(path / CONFIG, {**header, **self.config_dict()})
        return path

    def config_dict(self) -> dict[str, Any]:
        """The model's config as plain JSON types."""
        return dataclasses.asdict(self.config)

    @classmethod
    def from_pretrained(cls: type[M], path: str | os.PathLike, map_location: str = "cpu") -> M:
        """Rebuild a saved model. ``ValueError``/``FileNotFoundError`` say what is missing or mismatched."""
        config = read_config(path)
        model_type = config.pop("model_type")
        config.pop("linmix_version", None)
        config.pop("architectures", None)
        target = _MODELS.get(model_type)
        if target is None:
            raise ValueError(f"{path} holds an unknown model_type {model_type!r}; known: {', '.join(_MODELS)}")
        if cls is not PretrainedMixin and not issubclass(target, cls):
            name = target.__name__
            raise ValueError(f"{path} holds a {name}, not a {cls.__name__}; load it with linmix.{name}.from_pretrained")
        model = target.from_config(model_config_from_dict(config, Path(path) / CONFIG))
        load_weights(model, Path(path) / WEIGHTS, map_location)
        return model  # type: ignore[return-value]


def saved_class_name(config: dict[str, Any]) -> str | None:
    """The linmix class a saved ``config.json`` (as read by :func:`read_config`) holds, or None if unknown."""
    target = _MODELS.get(config.get("model_type"))
    return None if target is None else target.__name__


def model_config_from_dict(data: dict[str, Any], source: str | os.PathLike) -> ModelConfig:
    """A :class:`ModelConfig` from a saved dict: a missing or unknown key is a ``ValueError`` naming it and
    ``source``."""
    names = [f.name for f in dataclasses.fields(ModelConfig)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{source}: unknown key {unknown[0]!r}; a linmix model config has: {', '.join(names)}")
    missing = [n for n in names if n not in data]
    if missing:
        raise ValueError(f"{source}: missing key {missing[0]!r}; was it written by this version of linmix?")
    if data["arch"] == "bare":  # written before bare stacks had their own defaults: keep what it was trained as
        from linmix.defaults import LEGACY_BARE_MIXER_OPTIONS, fill_bare_options
        from linmix.models.spec import parse_layer_specs

        data = dict(data, mixer_options=fill_bare_options(parse_layer_specs(data["layers"]),
                                                          data["mixer_options"] or {}, LEGACY_BARE_MIXER_OPTIONS))
    return ModelConfig(**data)


def load_weights(model: Any, path: Path, map_location: str = "cpu") -> None:
    """Load safetensors weights; a truncated or corrupt file is one ``ValueError`` naming it."""
    try:
        load_model(model, str(path), strict=True, device=map_location)
    except (SafetensorError, OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is truncated or corrupt and cannot be read as safetensors ({err}); "
                         "re-save the model or restore the file") from None
    except RuntimeError as err:
        if "Missing key" in str(err) or "Unexpected key" in str(err) or "size mismatch" in str(err):
            first = str(err).strip().splitlines()[0]
            raise ValueError(f"{path} does not match its config.json ({first})") from None
        raise


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


#: which model class each ``ModelConfig.head`` builds
HEAD_CLASSES = {"lm": "LanguageModel", "classify": "Classifier", "multimodal": "MultimodalRegressor"}


def build_model(config: ModelConfig) -> Any:
    """A freshly initialised model of the class ``config.head`` names (``vocab_size`` etc. must be set)."""
    config = config.resolved()
    return _MODELS[HEAD_CLASSES[config.head]].from_config(config)


def load_pretrained(path: str | os.PathLike, map_location: str = "cpu") -> Any:
    """Load any saved linmix model, whatever its class."""
    return PretrainedMixin.from_pretrained.__func__(PretrainedMixin, path, map_location)  # type: ignore[attr-defined]


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp file and rename it over ``path``: a crash never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
