"""Which attention layers :func:`linmix.convert` leaves as softmax attention (``keep=``).

``keep`` counts the model's convertible attention layers in module order (cross-attention excluded):

* a list of indices (negative ones count from the end: ``[-1]`` keeps the last);
* a float ratio in (0, 1): keep ``round(ratio * N)`` layers, evenly spaced (layer ``floor((i + 1/2) N / k)``
  for ``i < k``, so 0.5 of 4 keeps layers 1 and 3);
* ``"auto"``: run the model once on ``calibration`` input with hooks that record each attention layer's
  input and output, run each candidate replacement (already initialised from the old weights) on the
  recorded input, and keep the ``auto_keep`` layers where the plain swap is worst: the largest relative
  MSE ``mean((new - old)^2) / mean(old^2)``. ``auto_keep`` is a count (int) or a ratio of N (float, at
  least one layer). The idea: the layers whose attention the new mixer imitates worst before any training
  are the ones where keeping softmax attention saves the most; it is a cheap heuristic on one batch, not a
  measurement of the trained model's quality.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


def resolve_keep(keep: Any, n: int, paths: Sequence[str]) -> tuple[list[int], str]:
    """Indices to keep for ``keep`` given as None, a list of indices or a ratio (not "auto"), and the
    reason for the report. ``ValueError`` for anything else."""
    if keep is None:
        return [], ""
    if isinstance(keep, float):
        if not 0 < keep < 1:
            raise ValueError(f"keep={keep} as a ratio must lie in (0, 1); pass a list of layer indices to keep "
                             "whole layers")
        return evenly_spaced(int(keep * n + 0.5), n), f"keep={keep} (evenly spaced)"
    if isinstance(keep, (list, tuple)):
        indices = []
        for i in keep:
            if isinstance(i, bool) or not isinstance(i, int):
                raise ValueError(f"keep must hold integer layer indices, got {i!r}")
            if not -n <= i < n:
                raise ValueError(f"keep index {i} is out of range for {n} attention layers "
                                 f"({', '.join(paths)})")
            indices.append(i % n)
        return sorted(set(indices)), f"keep={list(keep)}"
    raise ValueError(f"keep must be None, a list of layer indices, a ratio in (0, 1) or 'auto'; got {keep!r}")


def evenly_spaced(k: int, n: int) -> list[int]:
    """``k`` of ``n`` indices spread evenly (the centre of each of ``k`` equal slices)."""
    return [int((i + 0.5) * n / k) for i in range(k)] if k > 0 else []


def auto_count(auto_keep: Any, n: int) -> int:
    """How many layers ``keep="auto"`` keeps: an int count, or a float ratio of ``n`` (at least one)."""
    if isinstance(auto_keep, bool) or not isinstance(auto_keep, (int, float)):
        raise ValueError(f"auto_keep must be a layer count or a ratio in (0, 1), got {auto_keep!r}")
    if isinstance(auto_keep, int):
        if not 0 <= auto_keep <= n:
            raise ValueError(f"auto_keep={auto_keep} must lie in [0, {n}] (the model has {n} attention layers)")
        return auto_keep
    if not 0 < auto_keep < 1:
        raise ValueError(f"auto_keep={auto_keep} as a ratio must lie in (0, 1)")
    return max(1, int(auto_keep * n + 0.5))


def run_model(model: nn.Module, calibration: Any) -> None:
    """Call ``model`` on calibration input: a tensor, a tuple/list of positional arguments, or a dict of
    keyword arguments."""
    if isinstance(calibration, dict):
        model(**calibration)
    elif isinstance(calibration, (tuple, list)):
        model(*calibration)
    else:
        model(calibration)


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def calibration_scores(model: nn.Module, modules: dict[str, nn.Module], candidates: dict[str, nn.Module],
                       calibration: Any, contexts: Sequence[Callable[[nn.Module], Any]]) -> dict[str, float]:
    """Relative MSE of each candidate against the attention module it would replace, on the inputs that
    module saw in one eval-mode run of ``model`` on ``calibration`` (``contexts``: the families' settings
    for that run). The model's weights and training mode are left as they were."""
    if calibration is None:
        raise ValueError("keep='auto' needs calibration= input (token ids or the model's input tensor) to "
                         "score each layer on")
    seen: dict[str, tuple] = {}

    def recorder(path: str):
        def hook(module, args, kwargs, output):
            seen.setdefault(path, (args, kwargs, _first(output)))
        return hook

    handles = [m.register_forward_hook(recorder(path), with_kwargs=True) for path, m in modules.items()]
    was_training = model.training
    try:
        model.eval()
        with contextlib.ExitStack() as stack:
            for context in contexts:
                managed = context(model)
                if managed is not None:
                    stack.enter_context(managed)
            run_model(model, calibration)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    scores = {}
    for path, candidate in candidates.items():
        if path not in seen:
            raise ValueError(f"{path} did not run on the calibration input; pass input that reaches every "
                             "attention layer")
        args, kwargs, old = seen[path]
        candidate.eval()
        new = _first(candidate(*args, **kwargs)).to(old.dtype)
        scores[path] = float((new - old).pow(2).mean() / old.pow(2).mean().clamp_min(1e-30))
    return scores
