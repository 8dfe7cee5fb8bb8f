"""What ``linmix distill-hf`` measures on a Hugging Face causal LM, converted or not: validation
perplexity on fixed windows, a greedy sample, and the memory a decode holds at a given context length.

* Perplexity: the validation ids cut into consecutive, non-overlapping windows of ``eval_len`` tokens
  (the first ``eval_windows`` of them); every window is scored on its own (``eval_len - 1`` next-token
  predictions), and the perplexity is ``exp`` of the mean cross-entropy over all of them. The same
  windows for every model, so the numbers compare.
* Sample: greedy decoding of ``n`` tokens after the prompt, each step running the whole prefix
  (``use_cache=False``: converted layers keep no transformers cache), stopping early at the
  end-of-sequence token.
* Decode memory: the teacher's KV cache is ``2 * layers * kv_heads * head_dim * T`` floats (checked
  against a cache transformers actually builds, :func:`cache_nbytes`); a converted model's is the sum of
  its mixers' streaming states (:meth:`linmix.mixers.Mixer.prefill` on ``T`` random hidden states, read
  with :meth:`~linmix.mixers.MixerState.nbytes`), measured once per distinct mixer shape.
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from linmix.convert.teachers import converted_layers


def token_windows(ids: torch.Tensor, length: int, count: int, what: str = "the validation split") -> torch.Tensor:
    """The first ``count`` consecutive windows of ``length`` ids: ``[count, length]``."""
    if ids.numel() < length * count:
        raise ValueError(f"{what} has {ids.numel():,} tokens, fewer than eval_windows x eval_len = "
                         f"{count} x {length}; lower them")
    return ids[: length * count].view(count, length)


def train_batch(ids: torch.Tensor, step: int, batch_size: int, seq_len: int, seed: int) -> dict[str, torch.Tensor]:
    """``{"input_ids": [batch_size, seq_len]}``: windows of the training ids at positions drawn from
    ``(seed, step)`` alone, so any step's batch is the same in every run and every variant."""
    top = ids.numel() - seq_len
    if top < 1:
        raise ValueError(f"the training split has {ids.numel():,} tokens, not more than seq_len={seq_len}")
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, top, (batch_size,), generator=generator)
    return {"input_ids": torch.stack([ids[s: s + seq_len] for s in starts.tolist()])}


@torch.no_grad()
def perplexity(model: nn.Module, windows: torch.Tensor, progress: bool = False, desc: str = "eval") -> dict[str, Any]:
    """``{"loss", "ppl", "tokens", "seconds"}`` of ``model`` on ``windows`` (eval mode, no cache)."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    started, total, count = time.perf_counter(), 0.0, 0
    try:
        for window in tqdm(windows, desc=desc, unit="window", disable=not progress, dynamic_ncols=True, leave=False):
            ids = window[None]
            logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
            total += float(F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="sum"))
            count += ids.shape[1] - 1
    finally:
        model.train(was_training)
    loss = total / count
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "tokens": count,
            "seconds": time.perf_counter() - started}


@torch.no_grad()
def greedy(model: nn.Module, prompt_ids: list[int], n: int, eos: int | None = None) -> list[int]:
    """The ``n`` greedy continuation ids of ``prompt_ids`` (fewer when ``eos`` comes first)."""
    was_training = model.training
    model.eval()
    ids = torch.tensor([prompt_ids], dtype=torch.long)
    new: list[int] = []
    try:
        for _ in range(n):
            token = int(model(input_ids=ids, use_cache=False).logits[0, -1].argmax())
            new.append(token)
            if eos is not None and token == eos:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    finally:
        model.train(was_training)
    return new


def kv_cache_bytes(facts: dict[str, Any], length: int, bytes_per_value: int = 4) -> int:
    """A transformers KV cache for ``length`` tokens: keys and values of every layer's key/value heads."""
    return 2 * facts["layers"] * facts["kv_heads"] * facts["head_dim"] * length * bytes_per_value


def cache_nbytes(cache: Any) -> int:
    """Bytes of the tensors in a transformers cache object (``layers[i].keys/values``) or legacy tuples."""
    if isinstance(cache, torch.Tensor):
        return cache.numel() * cache.element_size()
    if isinstance(cache, (tuple, list)):
        return sum(cache_nbytes(item) for item in cache)
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return sum(cache_nbytes(getattr(layer, name, None)) for layer in layers for name in ("keys", "values"))
    return 0


@torch.no_grad()
def measured_kv_bytes(model: nn.Module, ids: torch.Tensor) -> int:
    """Bytes of the KV cache the (unconverted) model builds over ``ids: [1, T]``."""
    model.eval()
    output = model(input_ids=ids, use_cache=True)
    cache = output["cache"] if "cache" in output else output["past_key_values"]  # the name differs by version
    return cache_nbytes(cache)


@torch.no_grad()
def state_bytes(model: nn.Module, lengths: list[int], seed: int = 0) -> dict[str, Any]:
    """The converted layers' streaming-state bytes after each of ``lengths`` tokens: one prefill on random
    hidden states per distinct mixer (class and shape), times the layers that share it."""
    groups: dict[str, list[nn.Module]] = {}
    for layer in converted_layers(model):
        groups.setdefault(f"{type(layer.mixer).__name__}({layer.mixer.extra_repr()})", []).append(layer.mixer)
    generator = torch.Generator().manual_seed(seed)
    totals = [0] * len(lengths)
    for mixers in groups.values():
        mixer = mixers[0]
        param = next(mixer.parameters())
        for i, length in enumerate(lengths):
            x = torch.randn(1, length, mixer.d_model, generator=generator).to(param.dtype)
            _, state = mixer.prefill(x)
            totals[i] += state.nbytes() * len(mixers)
    return {"lengths": list(lengths), "bytes": totals, "mixers": {k: len(v) for k, v in groups.items()}}
