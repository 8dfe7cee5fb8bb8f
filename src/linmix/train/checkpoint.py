"""Checkpoints as safetensors + JSON, written atomically; nothing is ever pickled or unpickled.

A run directory looks like::

    run_dir/
      train_config.json             the TrainConfig (``--resume`` reads it back)
      config.json, model.safetensors   latest good model (save_pretrained) -> ``linmix sample`` works here
      tokenizer_config.json (+ tokenizer.json for BPE)
      metrics.jsonl, summary.json, loss_curve.png
      checkpoints/
        latest.json                 {"checkpoint": "step-00000200", "step": 200}
        step-00000200/
          config.json, model.safetensors, tokenizer files   (a loadable model folder by itself)
          optimizer.safetensors     every optimizer state tensor, flattened to "state.<param>.<name>"
          rng.safetensors           torch CPU / CUDA generator states, numpy's key array
          state.json                step, optimizer scalars + param groups, schedule, RNG scalars,
                                    data position, LR controller, early stopping, scaler, counters

A checkpoint is first written to ``checkpoints/.tmp-...`` (each file fsynced), then the folder is renamed
to ``step-NNNNNNNN`` and finally ``latest.json`` is replaced (temp file + ``os.replace``). A crash at any
point leaves the previous checkpoint as the one ``latest.json`` names; half-written folders keep their
``.tmp-`` prefix and are never taken for a checkpoint (they are removed by the next save).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from linmix.models.pretrained import write_json_atomic

CHECKPOINTS = "checkpoints"
LATEST = "latest.json"
STATE = "state.json"
OPTIMIZER = "optimizer.safetensors"
RNG = "rng.safetensors"
RUN_CONFIG = "train_config.json"
FORMAT = "linmix-checkpoint"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d{8,})$")


@dataclass
class Checkpoint:
    """A loaded checkpoint: its folder, the JSON state and the tensors (optimizer and RNG)."""

    path: Path
    step: int
    state: dict[str, Any]
    optimizer_tensors: dict[str, torch.Tensor]
    rng_tensors: dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- optimizer state


def flatten_optimizer_state(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into safetensors-ready tensors and a JSON part."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().to("cpu", copy=True).contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = _jsonable(value)
    groups = [{k: _jsonable(v) for k, v in group.items()} for group in state_dict["param_groups"]]
    indices = [str(i) for i in state_dict["state"]]
    return tensors, {"param_groups": groups, "scalars": scalars, "indices": indices}


def unflatten_optimizer_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state` (tuples such as ``betas`` come back as tuples)."""
    state: dict[int, dict[str, Any]] = {int(i): {} for i in meta["indices"]}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, entry in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value


# ----------------------------------------------------------------------------- RNG state


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every global RNG: torch CPU and CUDA generators, ``random`` and ``numpy.random``."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss = random.getstate()
    meta = {"numpy": [name, int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss]}
    return tensors, meta


def restore_rng_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only when CUDA is there)."""
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = sorted((k for k in tensors if k.startswith("torch_cuda_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    if cuda and torch.cuda.is_available():
        states = [tensors[k] for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


# ----------------------------------------------------------------------------- saving and loading


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def save_checkpoint(run_dir: str | os.PathLike, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: Mapping[str, Any], tokenizer: Any | None = None, keep: int = 1) -> Path:
    """Write a complete checkpoint of ``step`` atomically and point ``latest.json`` at it.

    ``model`` must have ``save_pretrained`` (an unwrapped linmix model); ``state`` is the JSON part
    (schedule, data position, controller, ...). Refuses (``FloatingPointError``) to save non-finite
    weights, so a diverged run never replaces its last good checkpoint. The ``keep`` newest checkpoints
    are kept, older ones removed.
    """
    check_finite(model)
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = step_dir_name(step)
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model.save_pretrained(tmp)  # type: ignore[attr-defined]
    if tokenizer is not None:
        tokenizer.save(tmp)
    opt_tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
    save_file(opt_tensors, str(tmp / OPTIMIZER))
    rng_tensors, rng_meta = capture_rng_state()
    save_file(rng_tensors, str(tmp / RNG))
    full = {"format": FORMAT, "version": FORMAT_VERSION, "step": step, **state,
            "optimizer": opt_meta, "rng": rng_meta}
    (tmp / STATE).write_text(json.dumps(full, indent=1, sort_keys=True, allow_nan=False) + "\n")
    _fsync_tree(tmp)
    final = root / name
    if final.exists():  # left by a run that died before updating latest.json: not referenced, replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_json_atomic(root / LATEST, {"checkpoint": name, "step": step})
    _prune(root, keep_latest=name, keep=keep)
    return final


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load a checkpoint folder, or the latest checkpoint of a run directory."""
    folder = resolve_checkpoint(path)
    state = _read_json(folder / STATE)
    if state.get("format") != FORMAT:
        raise ValueError(f"{folder / STATE} is not a linmix training checkpoint")
    if state.get("version") != FORMAT_VERSION:
        raise ValueError(f"{folder} has checkpoint format version {state.get('version')}, "
                         f"this linmix reads version {FORMAT_VERSION}")
    return Checkpoint(folder, int(state["step"]), state, load_file(str(folder / OPTIMIZER)),
                      load_file(str(folder / RNG)))


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint folder meant by ``path``: itself, or the latest checkpoint of a run directory."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"{p} is not a directory; pass a run directory or one of its checkpoints")
    if (p / STATE).is_file():
        return p
    found = latest_checkpoint(p)
    if found is None:
        raise FileNotFoundError(f"{p} holds no checkpoint (no {STATE}, no {CHECKPOINTS}/{LATEST})")
    return found


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``latest.json`` names; else the newest complete ``step-*`` folder; else ``None``."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    try:
        name = json.loads((root / LATEST).read_text())["checkpoint"]
        if _STEP_DIR.match(name) and (root / name / STATE).is_file():
            return root / name
    except (OSError, ValueError, KeyError, TypeError):
        pass
    complete = sorted(d.name for d in root.iterdir() if _STEP_DIR.match(d.name) and (d / STATE).is_file())
    return root / complete[-1] if complete else None


def check_finite(model: torch.nn.Module) -> None:
    """``FloatingPointError`` naming the first parameter holding NaN or inf."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise FloatingPointError(f"parameter {name} holds non-finite values")


def is_run_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a linmix training run directory."""
    return (Path(path) / RUN_CONFIG).is_file()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"missing {path}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def _fsync_tree(folder: Path) -> None:
    for f in folder.iterdir():
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _prune(root: Path, keep_latest: str, keep: int) -> None:
    steps = sorted(d.name for d in root.iterdir() if _STEP_DIR.match(d.name))
    survivors = set(steps[-max(1, keep):]) | {keep_latest}
    for d in root.iterdir():
        if (d.name.startswith(".tmp-") or (_STEP_DIR.match(d.name) and d.name not in survivors)) and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
