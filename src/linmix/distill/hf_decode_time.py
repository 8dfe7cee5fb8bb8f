"""Decode time against context length for ``linmix distill-hf``: the teacher decoding from its KV cache
beside every distilled variant decoding from its mixers' states.

For each length ``L`` of ``decode_lengths`` the prompt is the first ``L`` validation tokens (the same for
every model), followed by ``decode_tokens`` greedy tokens:

* the teacher: ``model.generate(..., do_sample=False)`` with transformers' KV cache;
* a variant: reloaded from its ``model/`` folder (:func:`~linmix.distill.hf_load.load_distilled`) and
  decoded by :func:`linmix.convert.generate_streaming` (one prefill, then one token per forward);
* the first variant at the smallest length (when it is at most :data:`RECOMPUTE_MAX` tokens), also the
  converted model's own ``generate(..., use_cache=False)``, which runs the whole prefix again for every
  token: the O(T) work per token that streaming avoids.

Every step is timed on its own: a clock marks ``time.perf_counter()`` whenever a new token's logits are
ready (a logits processor in ``generate``, ``on_token`` in ``generate_streaming``). The prefill time runs
from the call to the first mark (the prompt's forward plus the call's own setup); a token's time is the
gap between two consecutive marks (one forward of one token, and choosing it); the reported per-token
time is the median of those ``decode_tokens - 1`` gaps. The bytes are the decode state once the last
token is chosen (the prompt and every new token but the last fed through): the KV cache ``generate``
returns, or :func:`~linmix.convert.hf_decode.streaming_state_bytes`. Each model first decodes a short
prompt untimed, so that one-time allocations stay out of the numbers; torch runs on the threads the
process was given (``OMP_NUM_THREADS``), recorded beside each model. A length past the validation split
or past a learned position table (GPT-2's ``n_positions``, a mixer's bounding ``max_len``) is recorded as
skipped, with the reason.

The records go to ``decode.json`` in the run folder model by model, so an interrupted stage resumes; a
file written with other ``decode_lengths``/``decode_tokens`` is measured again.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from linmix.convert.hf_decode import generate_streaming, mixer_name, streaming_state_bytes
from linmix.distill.hf_load import load_distilled
from linmix.distill.hf_measure import cache_nbytes
from linmix.mixers.base import Mixer
from linmix.models.pretrained import write_json_atomic

DECODE = "decode.json"
#: the longest prompt the full-prefix ``generate(use_cache=False)`` reference is timed at
RECOMPUTE_MAX = 1024
#: the untimed warm-up decode: prompt tokens, new tokens
WARMUP = (8, 2)


class _Clock:
    """The ``time.perf_counter()`` of every call; as a logits processor it passes the scores through."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def mark(self) -> None:
        self.marks.append(time.perf_counter())

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.mark()
        return scores


def _timing(started: float, marks: list[float], nbytes: int, n: int) -> dict[str, Any]:
    if len(marks) != n:
        raise RuntimeError(f"the decode gave {len(marks)} tokens, {n} were asked for")
    gaps = [b - a for a, b in zip(marks, marks[1:])]
    return {"prefill_s": marks[0] - started, "token_s": statistics.median(gaps), "token_s_each": gaps,
            "new_tokens": n, "state_bytes": nbytes}


@torch.no_grad()
def time_generate(model: nn.Module, ids: torch.Tensor, n: int, use_cache: bool = True) -> dict[str, Any]:
    """Prefill and per-token seconds of greedy ``model.generate`` of ``n`` tokens after ``ids: [1, L]``,
    and the bytes of the KV cache it returns (0 without one)."""
    clock = _Clock()
    gen = getattr(model, "generation_config", None)
    ids_known = (getattr(gen, "pad_token_id", None), getattr(gen, "eos_token_id", None))
    pad = next((t for t in ids_known if t is not None), 0)
    started = time.perf_counter()
    out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                         min_new_tokens=n, use_cache=use_cache, logits_processor=[clock],
                         return_dict_in_generate=True, pad_token_id=pad[0] if isinstance(pad, list) else pad)
    cache = out["cache"] if "cache" in out else out.get("past_key_values")  # the name differs by version
    return _timing(started, clock.marks, cache_nbytes(cache) if use_cache and cache is not None else 0, n)


@torch.no_grad()
def time_streaming(model: nn.Module, ids: torch.Tensor, n: int) -> dict[str, Any]:
    """Prefill and per-token seconds of :func:`generate_streaming` of ``n`` tokens after ``ids: [1, L]``,
    and the bytes of decode state held once the last one is chosen."""
    clock, held = _Clock(), []

    def on_token(i: int) -> None:
        clock.mark()
        if i == n - 1:
            held.append(streaming_state_bytes(model))

    started = time.perf_counter()
    generate_streaming(model, ids, n, on_token=on_token)
    return _timing(started, clock.marks, held[0], n)


def skip_reason(model: nn.Module, length: int, n: int, available: int) -> str | None:
    """Why a prompt of ``length`` tokens plus ``n`` new ones cannot be decoded here, or None."""
    if length > available:
        return f"the validation split has {available:,} tokens, fewer than {length:,}"
    limit = getattr(getattr(model, "config", None), "n_positions", None)  # GPT-2's learned position table
    if isinstance(limit, int) and length + n - 1 > limit:
        return f"{length:,} + {n} tokens need {length + n - 1:,} positions; the model has n_positions={limit:,}"
    for mixer in (m for m in model.modules() if isinstance(m, Mixer)):
        if not mixer.length_free and length + n - 1 > mixer.max_len:
            return (f"{length:,} + {n} tokens need {length + n - 1:,} positions; {mixer_name(mixer)} is defined "
                    f"only up to max_len={mixer.max_len:,}")
    return None


def measure(model: nn.Module, name: str, streaming: bool, valid: torch.Tensor, lengths: list[int], n: int,
            bar: Any) -> dict[str, Any]:
    """``{"method", "threads", "runs"}``: one timing (or skip) per length for one model."""
    timer = time_streaming if streaming else time_generate
    model.eval()
    timer(model, valid[None, : WARMUP[0]], WARMUP[1])
    runs = []
    for length in lengths:
        bar.set_postfix_str(f"{name}, {length:,} tokens")
        reason = skip_reason(model, length, n, valid.numel())
        runs.append({"length": length, **({"skipped": reason} if reason else timer(model, valid[None, :length], n))})
        bar.update()
    return {"method": "generate_streaming" if streaming else "generate (KV cache)",
            "threads": torch.get_num_threads(), "runs": runs}


def recompute(model: nn.Module, name: str, valid: torch.Tensor, lengths: list[int], n: int) -> dict[str, Any]:
    """The converted model's own full-prefix ``generate(use_cache=False)`` at the smallest length."""
    length = min(lengths)
    record = {"variant": name, "length": length, "method": "generate (use_cache=False)"}
    reason = skip_reason(model, length, n, valid.numel())
    if length > RECOMPUTE_MAX:
        reason = f"{length:,} tokens is above {RECOMPUTE_MAX:,}, where the whole prefix every token takes too long"
    return {**record, **({"skipped": reason} if reason else time_generate(model, valid[None, :length], n, False))}


def decode_stage(run: Any, names: list[str], valid: torch.Tensor) -> dict[str, Any]:
    """The ``decode.json`` record of ``run`` (a :mod:`~linmix.distill.hf_demo` run) for the teacher and the
    finished variants ``names``, measuring whatever it does not hold yet."""
    from tqdm.auto import tqdm

    cfg, path = run.config, Path(run.out) / DECODE
    settings = {"lengths": list(cfg.decode_lengths), "tokens": cfg.decode_tokens}
    record = json.loads(path.read_text()) if path.is_file() else None
    if record is None or {k: record.get(k) for k in settings} != settings:
        record = {**settings, "prompt": "the first tokens of the validation split", "models": {}}
    todo = [name for name in ["teacher", *names] if name not in record["models"]]
    if not todo:
        run.log("decode time: measured earlier")
        return record
    lengths, n = settings["lengths"], settings["tokens"]
    with run.stage("decode", f"decode time of {', '.join(todo)}: prompts of {', '.join(map(str, lengths))} tokens, "
                   f"{n} new tokens each, torch threads: {torch.get_num_threads()}"):
        bar = tqdm(total=len(todo) * len(lengths), desc="decode time", unit="run", disable=not run.progress,
                   dynamic_ncols=True, leave=False)
        try:
            for name in todo:
                model = run.teacher()[0] if name == "teacher" else load_distilled(Path(run.out) / name / "model")[0]
                entry = measure(model, name, name != "teacher", valid, lengths, n, bar)
                if names and name == names[0]:
                    record["recompute"] = recompute(model, name, valid, lengths, n)
                record["models"][name] = entry
                write_json_atomic(path, record)
                del model
        finally:
            bar.close()
    for name in todo:
        runs = record["models"][name]["runs"]
        cells = [f"{r['token_s'] * 1e3:.1f} ms" if "token_s" in r else "skipped" for r in runs]
        run.log(f"  {name}: per new token at {', '.join(f'{L:,}' for L in lengths)} tokens: {', '.join(cells)}")
    return record
