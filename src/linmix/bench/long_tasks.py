"""The pieces of ``linmix bench long``: train a small LM, extend it past its training length, score it.

* :func:`train_lm`: a plain AdamW loop (linear warm-up, cosine decay, clip 1.0) at ``T_train``; the same
  steps, batch and learning rate for every model.
* :func:`extend_lm`: a copy of a trained LM built with a larger ``max_len``. Every tensor whose shape does
  not depend on ``max_len`` is copied as is; the ones that do (the positional table ``encoder.pos``, a
  summation layer's modulation table, a causal spectral kernel's taps) get their first ``T_train``
  rows/taps from the trained model and keep their *initialisation* beyond: those rows were never trained,
  which is exactly what a length-extrapolation test probes.
* :func:`eval_ppl` / :func:`eval_passkey`: perplexity over a bounded number of windows, digit accuracy of
  passkey retrieval; both time each sequence (batch 1, no grad) for the cost table.
* :func:`long_memory_job`: the fresh-process memory probe's job (one forward of one sequence of T tokens).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from linmix.bench.timing import synchronize
from linmix.data.synthetic.passkey import IGNORE, PasskeyConfig, make_passkey


class CannotRun(Exception):
    """A model that cannot be evaluated at a length (its status says why)."""


def build_lm(layers: str, vocab: int, d_model: int, n_heads: int, positional: str, max_len: int, seed: int):
    from linmix.models.lm import LanguageModel

    torch.manual_seed(seed)
    return LanguageModel(vocab, d_model=d_model, layers=layers, max_len=max_len, n_heads=n_heads,
                         positional=positional)


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def train_lm(model, batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]], steps: int, lr: float,
             device: torch.device, warmup_frac: float = 0.1) -> dict:
    """Train ``model`` in place on ``batch(step) -> (inputs, targets)``; returns the final loss and time."""
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, int(warmup_frac * steps))

    def factor(s: int) -> float:
        return (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    losses, start = [], time.perf_counter()
    for s in range(steps):
        x, y = (t.to(device) for t in batch(s))
        loss = F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    tail = losses[-max(1, steps // 10):]
    return {"train_loss": sum(tail) / len(tail), "train_s": time.perf_counter() - start}


def extend_lm(model, max_len: int):
    """``model`` rebuilt with ``max_len`` and its trained weights copied in (see the module docstring).

    ``CannotRun`` when a tensor's shape changes in a way a prefix copy cannot map (more than one axis)."""
    from linmix.models.lm import LanguageModel

    if max_len <= model.max_len:
        return model
    c = model.config
    bigger = LanguageModel(c.vocab_size, d_model=c.d_model, layers=c.layers, max_len=max_len, n_heads=c.n_heads,
                           positional=c.positional, tie_weights=c.tie_weights, norm=c.norm, ffn_mult=c.ffn_mult,
                           dropout=c.dropout, mixer_options=c.mixer_options)
    old, new = model.state_dict(), bigger.state_dict()
    with torch.no_grad():
        for key, value in old.items():
            target = new[key]
            if target.shape == value.shape:
                target.copy_(value)
                continue
            axes = [i for i, (a, b) in enumerate(zip(value.shape, target.shape)) if a != b]
            if value.dim() != target.dim() or len(axes) != 1 or value.shape[axes[0]] > target.shape[axes[0]]:
                raise CannotRun(f"cannot run past max_len={model.max_len} ({key}: {tuple(value.shape)} -> "
                                f"{tuple(target.shape)} has no prefix copy)")
            target.narrow(axes[0], 0, value.shape[axes[0]]).copy_(value)
    return bigger.to(next(model.parameters()).device)


def model_at(model, T: int, extend: bool):
    """The model to evaluate at length T: itself (within max_len, or a length-free model at any T), an
    extended copy, or ``CannotRun``."""
    if T <= model.max_len or model.length_free:
        return model
    if not extend:
        raise CannotRun(f"cannot run past max_len={model.max_len}")
    return extend_lm(model, T)


def _forward(model, x: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, float]:
    synchronize(device)
    start = time.perf_counter()
    try:
        logits = model(x)
    except ValueError as err:
        if "max_len" in str(err):
            raise CannotRun(f"cannot run past max_len={model.max_len}") from err
        raise
    synchronize(device)
    return logits, time.perf_counter() - start


def lm_windows(tokens: torch.Tensor, T: int, eval_tokens: int) -> int:
    """How many windows of T (+1 target) the first ``max(eval_tokens, T)`` validation tokens give."""
    return min(max(1, eval_tokens // T), (len(tokens) - 1) // T)


@torch.no_grad()
def eval_ppl(model, tokens: torch.Tensor, T: int, eval_tokens: int, device: torch.device) -> dict:
    """Validation perplexity over the first windows of T tokens (batch 1 each, timed)."""
    n = lm_windows(tokens, T, eval_tokens)
    if n < 1:
        raise CannotRun(f"skipped: validation split has {len(tokens)} tokens, fewer than T+1")
    model.eval()
    total, times = 0.0, []
    for w in range(n):
        chunk = tokens[w * T: (w + 1) * T + 1].to(device)
        logits, took = _forward(model, chunk[None, :-1], device)
        total += float(F.cross_entropy(logits[0].float(), chunk[1:], reduction="sum"))
        times.append(took)
    loss = total / (n * T)
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "tokens_evaluated": n * T, "sequences": n,
            "seconds_per_seq": sorted(times)[len(times) // 2]}


@torch.no_grad()
def eval_passkey(model, config: PasskeyConfig, T: int, depth: float, n: int, seed: int,
                 device: torch.device) -> dict:
    """Digit accuracy of passkey retrieval at length T and one depth (``n`` sequences, batch 1 each)."""
    model.eval()
    x, y = make_passkey(config, n, T, depth, seed)
    right, times = 0, []
    for i in range(n):
        logits, took = _forward(model, x[i: i + 1].to(device), device)
        k = config.key_digits
        right += int((logits[0, -k:].argmax(-1).cpu() == y[i, -k:]).sum())
        times.append(took)
    return {"accuracy": right / (n * config.key_digits), "tokens_evaluated": n * T, "sequences": n,
            "seconds_per_seq": sorted(times)[len(times) // 2]}


def long_memory_job(layers: str, vocab: int, d_model: int, n_heads: int, positional: str, T: int,
                    device: str) -> Callable[[], object]:
    """Fresh-process job: an LM at ``max_len = T`` (weights do not change the memory), warmed up on 8
    tokens; the measured call is one no-grad forward of one sequence of T tokens."""
    dev = torch.device(device)
    lm = build_lm(layers, vocab, d_model, n_heads, positional, T, 0).to(dev).eval()
    ids = torch.randint(0, vocab, (1, T), device=dev)
    torch.set_grad_enabled(False)
    lm(ids[:, :8])
    return lambda: lm(ids)


def is_oom(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or "out of memory" in str(err).lower() or type(err).__name__ == "OutOfMemoryError"
