"""What distillation accepts as batches, and how a batch is fed to a model and scored.

A *batch* is one of:

* a token-id tensor ``[B, T]``: the model is called as ``model(ids)``; next-token targets are ``ids``
  shifted by one;
* a pair ``(x, y)`` of integer tensors of one shape (linmix's LM batches): ``model(x)``, targets ``y``;
* a dict of keyword arguments (Hugging Face style): ``model(**batch)``; ``input_ids`` give the targets,
  shifted, and positions where ``attention_mask`` (or linmix's ``padding_mask``) is 0/False are ignored.

*Batches* for a stage are a sequence (step ``s`` uses item ``s % len``), a callable ``step -> batch``, or
any other iterable (read in order; a resumed run skips the items the earlier run used, so it must yield
the same stream again). Sequences and callables make a resumed run see exactly the batches the
uninterrupted one would.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Batch = Any


def batch_stream(batches: Any, start: int, steps: int) -> Iterator[Batch]:
    """The batches of steps ``start .. steps - 1`` (see the module doc for the accepted forms)."""
    if isinstance(batches, (torch.Tensor, dict)) or (isinstance(batches, tuple) and _is_pair(batches)):
        raise ValueError("batches must be a list of batches, a callable step -> batch or an iterable of batches, "
                         "not a single batch; pass [batch] to reuse one batch every step")
    if isinstance(batches, Sequence) and not isinstance(batches, (str, bytes)):
        if len(batches) == 0:
            raise ValueError("batches is empty")
        return (batches[s % len(batches)] for s in range(start, steps))
    if callable(batches):
        fn: Callable[[int], Batch] = batches
        return (fn(s) for s in range(start, steps))
    if isinstance(batches, Iterable):
        return _counted(itertools.islice(iter(batches), start, steps), steps - start)
    raise ValueError(f"batches must be a sequence, a callable step -> batch or an iterable, "
                     f"got {type(batches).__name__}")


def _counted(items: Iterator[Batch], expected: int) -> Iterator[Batch]:
    n = 0
    for item in items:
        n += 1
        yield item
    if n < expected:
        raise ValueError(f"batches ran out after {n} of the {expected} batches this run needs; give more "
                         "(or a list, which is cycled)")


def _is_pair(batch: Any) -> bool:
    return (len(batch) == 2 and all(isinstance(t, torch.Tensor) for t in batch)
            and batch[0].shape == batch[1].shape and not batch[0].is_floating_point())


def call_model(model: nn.Module, batch: Batch) -> Any:
    """Run ``model`` on ``batch``."""
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        if _is_pair(batch):
            return model(batch[0])
        return model(*batch)
    return model(batch)


def logits_of(output: Any) -> torch.Tensor:
    """The logits in a model's output: the tensor itself, ``output.logits``, or the first element."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ValueError(f"cannot find logits in a model output of type {type(output).__name__}")


def real_positions(batch: Batch) -> torch.Tensor | None:
    """``[B, T]`` bool, True at real (not padded) tokens, when the batch says; else None."""
    if isinstance(batch, dict):
        for key in ("attention_mask", "padding_mask"):
            mask = batch.get(key)
            if isinstance(mask, torch.Tensor) and mask.dim() == 2:
                return mask.bool()
    return None


def targets(batch: Batch, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(logits, targets, real)`` aligned for next-token loss: for an ``(x, y)`` pair every position; for
    ids, positions ``0 .. T-2`` predict ``1 .. T-1``. ``real`` masks padded targets (or is None)."""
    if isinstance(batch, (tuple, list)) and _is_pair(batch):
        return logits, batch[1], None
    if isinstance(batch, dict):
        ids = batch.get("input_ids", batch.get("ids"))
    elif isinstance(batch, (tuple, list)):
        ids = batch[0]
    else:
        ids = batch
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        raise ValueError("next-token loss needs token ids [B, T]: a tensor, an (x, y) pair or a dict with input_ids")
    real = real_positions(batch)
    return logits[:, :-1], ids[:, 1:], None if real is None else (real[:, 1:] & real[:, :-1])


def masked_mean(values: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values: [B, T]`` over the real positions (all when ``real`` is None)."""
    if real is None:
        return values.mean()
    return values[real].sum() / real.sum().clamp_min(1)


def next_token_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Cross-entropy of the next token, over real positions, in float32."""
    logits, y, real = targets(batch, logits)
    ce = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
    return masked_mean(ce, real)


def kl_to_teacher(logits: torch.Tensor, teacher_logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``KL(teacher || student)`` of the next-token distributions, per position, averaged over real ones."""
    student, _, real = targets(batch, logits)
    teacher, _, _ = targets(batch, teacher_logits)
    log_p = F.log_softmax(teacher.float(), dim=-1)
    log_q = F.log_softmax(student.float(), dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return masked_mean(kl, real)
