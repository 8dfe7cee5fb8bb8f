"""``linmix bench long``: does a model use, and survive, long context?

Every causal mixer stack of :data:`MODELS` (4 layers, same D, heads, FFN, steps, batch and learning rate;
sizes are *not* equalised, so no parameter parity is claimed: the parameter counts are in the output)
plus the hybrid ``summation*3,attention`` and the spectral paper's hybrids (spectral with local attention,
with one global attention layer; summation with local attention). Bidirectional-only mixers (fnet) are excluded: they see the
future, so next-token tasks are meaningless for them (said in the output).

* **Length extrapolation.** Each model is trained at ``train_len`` on each corpus of ``datasets`` (Tiny
  Shakespeare by characters, WikiText-2 by BPE) with each ``positionals`` scheme, then scored (validation
  perplexity) at every ``eval_lengths`` T over the first ``max(eval_tokens, T)`` validation tokens, cut into
  windows of T (tokens evaluated are recorded). Past ``train_len`` the model is rebuilt with ``max_len = T``
  and its weights copied in (:func:`linmix.bench.long_tasks.extend_lm`): positional-table rows, summation
  modulation rows and causal spectral kernel taps beyond ``train_len`` keep their initialisation, i.e.
  are **untrained**: that is what extrapolation tests. With ``extend=False`` the trained model is used as
  built and every longer T is reported ``cannot run past max_len=...``.
* **Passkey retrieval** (Landmark Attention, arXiv 2305.16300; :mod:`linmix.data.synthetic.passkey`):
  trained at ``passkey_train_len`` with random depths, scored at ``passkey_lengths`` x ``passkey_depths``
  (accuracy = key digits right; chance 10%). One heatmap per model.
* **Cost at length.** Seconds per sequence (batch 1, no grad, median) at every point, and the peak extra
  memory of one forward at T in a fresh process (:mod:`linmix.bench.memprobe`) when ``memory`` is on.

Each record's ``subject`` is ``lm:<corpus>/<model>/<positional>`` or ``passkey/<model>/<depth>`` (what
``targets.toml`` refers to). Statuses: ``ok``, ``cannot run past max_len=...``, ``out of memory``, ``skipped: over time budget`` (the
predicted time of a point, from the previous length with O(T^2) growth for attention layers and O(T)
otherwise, exceeds ``point_budget_s``; every longer length of that model is skipped too).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import torch

from linmix.bench.base import LMBenchConfig
from linmix.config import POSITIONAL
from linmix.bench.long_tasks import (CannotRun, build_lm, eval_passkey, eval_ppl, is_oom, lm_windows, model_at,
                                     param_count, train_lm)
from linmix.bench.memprobe import probe_memory
from linmix.bench.progress import Progress
from linmix.bench.resume import append_record, read_records
from linmix.bench.registry import layer_names, parse_lengths
from linmix.bench.timing import resolve_device
from linmix.data.synthetic.passkey import PasskeyConfig, make_passkey
from linmix.mixers.registry import MIXERS

TITLE = "linmix bench long: length extrapolation, passkey retrieval and cost at long context"
EXCLUDED = [m for m in MIXERS if not MIXERS[m].supports_causal]
#: every causal mixer stacked 4 times, the summation papers' hybrid, and the spectral paper's hybrids
MODELS = {m: f"{m}*4" for m in MIXERS if MIXERS[m].supports_causal} | {
    "spectral_implicit": "spectral(kernel=implicit)*4",
    "hybrid": "summation*3,attention",
    "spectral_local": "spectral(kernel=implicit)*3,local_attention(window=64)",
    "spectral_attention": "spectral(kernel=implicit)*3,attention",
    "summation_local": "summation(positions=sinusoidal)*3,local_attention(window=64)",
}
EVAL_LENGTHS = [256 * 2**i for i in range(9)]  # 256 ... 65536
CHANCE = 0.1


def _floats(spec) -> list[float]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        return sorted({float(s) for s in items if str(s).strip()})
    except ValueError:
        raise ValueError(f"depths must be numbers in [0, 1] like 0,0.5,1, got {spec!r}") from None


@dataclass
class LongConfig(LMBenchConfig):
    """What ``bench long`` trains and measures (recorded in every output)."""

    d_model: int = 128
    datasets: str = "tinyshakespeare:char,wikitext2:bpe"
    data_dir: str | None = None
    bpe_vocab: int = 8192
    positionals: str = "learned,rotary"
    train_len: int = 256
    train_steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    eval_lengths: list[int] | str = field(default_factory=lambda: list(EVAL_LENGTHS))
    eval_tokens: int = 65536
    extend: bool = True
    passkey: bool = True
    passkey_train_len: int = 512
    passkey_steps: int = 1000
    passkey_lengths: list[int] | str = field(default_factory=lambda: [1024, 4096, 16384, 65536])
    passkey_depths: list[float] | str = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    passkey_samples: int = 10
    passkey_filler: str = "random"
    point_budget_s: float = 300.0
    out: str | None = None  # folder of the resume file (None: nothing written, nothing skipped)

    QUICK: ClassVar[dict] = dict(models="summation,attention", d_model=64, datasets="tinyshakespeare:char",
                                 positionals="learned", train_steps=80, batch_size=8, eval_lengths=[256, 1024, 4096],
                                 eval_tokens=8192, passkey_train_len=256, passkey_steps=80,
                                 passkey_lengths=[1024, 4096], passkey_samples=2, point_budget_s=60.0)
    MODELS: ClassVar[dict[str, str]] = MODELS

    def corpora(self) -> list[tuple[str, str]]:
        """``(dataset, tokenizer)`` pairs; ``""`` or ``none``: no language-model task."""
        out = []
        for item in (s.strip() for s in self.datasets.split(",") if s.strip() and s.strip() != "none"):
            name, _, tok = item.partition(":")
            out.append((name.strip(), (tok or "char").strip()))
        return out

    def validate(self) -> None:
        super().validate()
        for name, layers in self.model_specs().items():
            bidir = [m for m in layer_names(layers) if m in EXCLUDED]
            if bidir:
                raise ValueError(f"model {name!r} uses bidirectional-only {bidir}: it sees the future, so it "
                                 "has no place in next-token tasks")
        for name, tok in self.corpora():
            if tok not in ("char", "word", "bpe"):
                raise ValueError(f"dataset {name!r}: tokenizer must be char, word or bpe, got {tok!r}")
        for p in self.positionals.split(","):
            if p.strip() not in POSITIONAL:
                raise ValueError(f"positional must be one of {', '.join(POSITIONAL)}, got {p!r}")
        if min(self.train_len, self.train_steps, self.batch_size, self.eval_tokens, self.passkey_steps,
               self.passkey_samples) < 1 or self.lr <= 0 or self.point_budget_s <= 0:
            raise ValueError("train_len, steps, batch size, eval tokens, passkey samples, lr and the time budget "
                             "must be positive")
        parse_lengths(self.eval_lengths)
        if self.passkey:
            pk = self.passkey_config()
            pk.validate()
            if min([self.passkey_train_len] + parse_lengths(self.passkey_lengths)) < pk.min_length():
                raise ValueError(f"passkey lengths must be >= {pk.min_length()}")
            if any(not 0 <= d <= 1 for d in _floats(self.passkey_depths)):
                raise ValueError(f"passkey depths must lie in [0, 1], got {self.passkey_depths}")

    def passkey_config(self) -> PasskeyConfig:
        return PasskeyConfig(filler=self.passkey_filler)

    def describe(self) -> dict:
        return super().describe() | {"eval_lengths": parse_lengths(self.eval_lengths),
                                     "passkey_lengths": parse_lengths(self.passkey_lengths),
                                     "passkey_depths": _floats(self.passkey_depths),
                                     "excluded_bidirectional": EXCLUDED}


Config = LongConfig  # the bench interface (see linmix.bench.runner)


def _quadratic(layers: str) -> bool:
    return "attention" in layer_names(layers)


class _Points:
    """Evaluates one trained model over ascending lengths, carrying OOM / time-budget stops forward."""

    def __init__(self, cfg: LongConfig, model, layers: str, device: torch.device, bar: Progress) -> None:
        self.cfg, self.model, self.layers, self.device, self.bar = cfg, model, layers, device, bar
        self.stopped: str | None = None
        self.last: tuple[int, float] | None = None  # (T, seconds per sequence)

    def run(self, T: int, sequences: int, score) -> dict:
        """``score(model_at_T)`` -> measurements, or the status that stopped it."""
        if self.stopped is None and self.last is not None:
            T0, s0 = self.last
            predicted = s0 * (T / T0) ** (2 if _quadratic(self.layers) else 1) * sequences
            if predicted > self.cfg.point_budget_s:
                self.stopped = f"skipped: over time budget (predicted {predicted:.0f} s > {self.cfg.point_budget_s:.0f} s)"
        if self.stopped is not None:
            return {"status": self.stopped}
        try:
            out = score(model_at(self.model, T, self.cfg.extend))
        except CannotRun as err:
            return {"status": str(err)}
        except (RuntimeError, MemoryError) as err:
            if not is_oom(err):
                raise
            self.stopped = "out of memory"
            return {"status": self.stopped}
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        self.last = (T, out["seconds_per_seq"])
        return {"status": "ok"} | out


def _peak(cfg: LongConfig, cache: dict, layers: str, vocab: int, positional: str, T: int) -> float | None:
    key = (layers, vocab, positional, T)
    if key not in cache:
        probe = probe_memory("linmix.bench.long_tasks:long_memory_job",
                             dict(layers=layers, vocab=vocab, d_model=cfg.d_model, n_heads=cfg.n_heads,
                                  positional=positional, T=T, device=cfg.device), device=cfg.device)
        cache[key] = probe.get("peak_extra_mib") if probe.get("ok") else None
    return cache[key]


def _lm_rows(cfg, name, layers, corpus, tokens, vocab, positional, device, bar, mem) -> list[dict]:
    train, valid = tokens
    gen = torch.Generator().manual_seed(cfg.seed)

    def batch(_s):
        starts = torch.randint(0, len(train) - cfg.train_len - 1, (cfg.batch_size,), generator=gen)
        ids = torch.stack([train[s: s + cfg.train_len + 1] for s in starts.tolist()])
        return ids[:, :-1], ids[:, 1:]

    bar.step(f"{corpus} {name} pos={positional} train")
    model = build_lm(layers, vocab, cfg.d_model, cfg.n_heads, positional, cfg.train_len, cfg.seed)
    base = {"task": f"lm:{corpus}", "model": name, "layers": layers, "positional": positional,
            "params": param_count(model), "train_len": cfg.train_len} | train_lm(model, batch, cfg.train_steps,
                                                                                 cfg.lr, device)
    bar.update(1)
    points, rows = _Points(cfg, model, layers, device, bar), []
    for T in parse_lengths(cfg.eval_lengths):
        bar.step(f"{corpus} {name} pos={positional} T={T}")
        got = points.run(T, max(1, lm_windows(valid, T, cfg.eval_tokens)),
                         lambda m, T=T: eval_ppl(m, valid, T, cfg.eval_tokens, device))
        if got["status"] == "ok" and cfg.memory:
            got["peak_mem_mib"] = _peak(cfg, mem, layers, vocab, positional, T)
        rows.append(base | {"subject": f"lm:{corpus}/{name}/{positional}", "T": T, "depth": None, "accuracy": None,
                            "untrained_positions": max(0, T - cfg.train_len)} | got)
        bar.update(1)
    return rows


def _passkey_rows(cfg, name, layers, positional, device, bar, mem) -> list[dict]:
    pk, L = cfg.passkey_config(), cfg.passkey_train_len
    bar.step(f"passkey {name} train")
    model = build_lm(layers, pk.vocab_size, cfg.d_model, cfg.n_heads, positional, L, cfg.seed)
    base = {"task": "passkey", "model": name, "layers": layers, "positional": positional,
            "params": param_count(model), "train_len": L} | train_lm(
        model, lambda s: make_passkey(pk, cfg.batch_size, L, None, cfg.seed * 1_000_003 + s), cfg.passkey_steps,
        cfg.lr, device)
    bar.update(1)
    points, rows, depths = _Points(cfg, model, layers, device, bar), [], _floats(cfg.passkey_depths)
    for T in parse_lengths(cfg.passkey_lengths):
        for i, d in enumerate(depths):
            bar.step(f"passkey {name} T={T} depth={d:.0%}")
            got = points.run(T, cfg.passkey_samples * (len(depths) - i),
                             lambda m, T=T, d=d: eval_passkey(m, pk, T, d, cfg.passkey_samples,
                                                              cfg.seed + 7919 * T + int(100 * d), device))
            if got["status"] == "ok" and cfg.memory:
                got["peak_mem_mib"] = _peak(cfg, mem, layers, pk.vocab_size, positional, T)
            rows.append(base | {"subject": f"passkey/{name}/{d:g}", "T": T, "depth": d, "ppl": None,
                                "untrained_positions": max(0, T - L)} | got)
            bar.update(1)
    return rows


def _corpus_tokens(cfg: LongConfig, name: str, kind: str) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
    from linmix.data import build_tokenizer, encode_corpus, load_lm_text

    train, valid = (load_lm_text(name, s, cfg.data_dir) for s in ("train", "valid"))
    tok = build_tokenizer(kind, train, cfg.bpe_vocab if kind == "bpe" else None)
    return (encode_corpus(tok, train), encode_corpus(tok, valid)), tok.vocab_size


def run(config: LongConfig, progress: bool = True) -> list[dict]:
    """Train and score every (task, model, positional); one record per (task, model, T[, depth])."""
    device = resolve_device(config.device)
    cfg = replace(config, device=str(device))
    models, corpora = cfg.model_specs(), cfg.corpora()
    positionals = [p.strip() for p in cfg.positionals.split(",") if p.strip()]
    n_lm = len(corpora) * len(positionals) * len(models) * (1 + len(parse_lengths(cfg.eval_lengths)))
    n_pk = len(models) * (1 + len(parse_lengths(cfg.passkey_lengths)) * len(_floats(cfg.passkey_depths)))
    rows, mem = [], {}
    resume = _Resume(cfg)
    with Progress(n_lm + n_pk * cfg.passkey, "bench long", progress) as bar:
        for corpus, kind in corpora:
            tokens = None
            for positional in positionals:
                for name, layers in models.items():
                    unit = f"lm:{corpus}/{name}/{positional}"
                    mine = resume.get(unit, layers, bar, 1 + len(parse_lengths(cfg.eval_lengths)))
                    if mine is None:
                        tokens = tokens or _corpus_tokens(cfg, corpus, kind)
                        mine = _lm_rows(cfg, name, layers, corpus, *tokens, positional, device, bar, mem)
                        resume.put(unit, layers, mine)
                    bar.log(f"{corpus} {name} pos={positional}: " + ", ".join(
                        f"T={r['T']} " + (f"ppl {r['ppl']:.2f}" if r["status"] == "ok" else r["status"]) for r in mine))
                    rows += mine
        if cfg.passkey:
            for name, layers in models.items():
                unit = f"passkey/{name}/{positionals[0]}"
                mine = resume.get(unit, layers, bar, n_pk // max(1, len(models)))
                if mine is None:
                    mine = _passkey_rows(cfg, name, layers, positionals[0], device, bar, mem)
                    resume.put(unit, layers, mine)
                bar.log(f"passkey {name}: mean accuracy " + ", ".join(
                    f"T={T} {_mean([r.get('accuracy') for r in mine if r['T'] == T])}" for T in dict.fromkeys(r["T"] for r in mine)))
                rows += mine
    return rows


class _Resume:
    """``<out>/long_runs.jsonl``: every finished (task, model, positional) unit's rows, appended as it ends.

    A unit is reused when its layers and the measurement setting (every config field but the selection of
    models, corpora and schemes) match, so a killed run resumes and runs over model subsets combine."""

    SELECTION = ("models", "datasets", "positionals", "passkey", "out", "threads", "data_dir", "quick")

    def __init__(self, cfg: LongConfig) -> None:
        from dataclasses import fields
        import json

        self.path = Path(cfg.out) / "long_runs.jsonl" if cfg.out else None
        self.setting = json.loads(json.dumps({f.name: getattr(cfg, f.name) for f in fields(cfg)
                                              if f.name not in self.SELECTION}, default=str))
        records, _ = read_records(self.path)
        self.done = {(r.get("unit"), r.get("layers")): r["rows"] for r in records
                     if r.get("setting") == self.setting and isinstance(r.get("rows"), list)}

    def get(self, unit: str, layers: str, bar: Progress, steps: int) -> list[dict] | None:
        rows = self.done.get((unit, layers))
        if rows is not None:
            bar.update(steps)
        return rows

    def put(self, unit: str, layers: str, rows: list[dict]) -> None:
        append_record(self.path, {"unit": unit, "layers": layers, "setting": self.setting, "rows": rows})


def _mean(values) -> str:
    values = [v for v in values if v is not None]
    return f"{sum(values) / len(values):.2f}" if values else "n/a"


from linmix.bench.long_report import markdown, plot, summarize  # noqa: E402  (the report half of this bench)

__all__ = ["Config", "EXCLUDED", "LongConfig", "MODELS", "TITLE", "markdown", "plot", "run", "summarize"]
