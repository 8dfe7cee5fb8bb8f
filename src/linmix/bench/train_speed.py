"""``linmix bench train``: end-to-end training throughput of same-size LMs vs sequence length.

Each model of :data:`linmix.bench.registry.TRAIN_MODELS` (4 layers, same D, heads, FFN and vocabulary; only
the mixers differ) runs a plain loop on random tokens: forward, next-token cross-entropy, backward,
``AdamW.step``, ``zero_grad``. The batch holds ``tokens_per_step`` tokens (``B = max(1, tokens // T)``), so
every length does comparable work per step. The models of one length are stepped round-robin (one step of
each, then again) after warm-up, and the median step time gives tokens/s. This loop is self-contained: it
does not use ``linmix.train``. With ``memory`` on, the peak extra memory of one training step is measured in
a fresh process. Layer specs (``--models name=layers``) go to the model unchanged, inline options included.
With ``match_params`` every model's width is sized (per length, since learned position tables grow with T)
so its parameter count is the closest to the attention LM's, as claims of "an equivalent transformer" need.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from linmix.bench.base import LMBenchConfig
from linmix.bench.memprobe import probe_memory
from linmix.bench.progress import Progress
from linmix.bench.registry import BASELINE, TRAIN_MODELS, parse_lengths
from linmix.bench.report import pivot, sections, targets_markdown
from linmix.bench.timing import autocast_context, median, resolve_device, time_call

TITLE = "linmix bench train: end-to-end training tokens/s"
DEFAULT_LENGTHS = [512, 2048, 8192]
QUICK_LENGTHS = [256, 1024]


@dataclass
class TrainConfig(LMBenchConfig):
    """What ``bench train`` measures (recorded in every output)."""

    lengths: list[int] = field(default_factory=lambda: list(DEFAULT_LENGTHS))
    tokens_per_step: int = 8192
    steps: int = 5
    warmup: int = 2
    lr: float = 3e-4
    dtype: str = "float32"
    #: size every model's d_model to the attention LM's parameter count at each length (multiples of 2 * heads)
    match_params: bool = False

    QUICK: ClassVar[dict] = dict(lengths=QUICK_LENGTHS, tokens_per_step=2048, steps=2, warmup=1, memory=False)
    MODELS: ClassVar[dict[str, str]] = TRAIN_MODELS

    def validate(self) -> None:
        """``ValueError`` for a setting no run could use (before anything is built)."""
        super().validate()
        if self.steps < 1 or self.warmup < 0 or self.tokens_per_step <= 0:
            raise ValueError("steps must be >= 1, warmup >= 0, tokens per step > 0")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        if any(t <= 1 for t in parse_lengths(self.lengths)):
            raise ValueError(f"lengths must be integers > 1, got {self.lengths}")

    def describe(self) -> dict:
        """The config as recorded, with the lengths and models resolved."""
        return super().describe() | {"lengths": parse_lengths(self.lengths)}


Config = TrainConfig  # the bench interface (see linmix.bench.runner)


class TrainLoop:
    """One model, its optimiser and a fixed random batch; :meth:`step` is one full training step."""

    def __init__(self, layers: str, cfg: TrainConfig, T: int, device: torch.device,
                 d_model: int | None = None) -> None:
        torch.manual_seed(cfg.seed)
        self.device, self.dtype = device, cfg.dtype
        self.d_model = d_model or cfg.d_model
        self.lm = build_lm(layers, cfg, T, self.d_model).to(device).train()
        self.params = sum(p.numel() for p in self.lm.parameters())
        self.opt = torch.optim.AdamW(self.lm.parameters(), lr=cfg.lr)
        self.batch = max(1, cfg.tokens_per_step // T)
        ids = torch.randint(0, cfg.vocab_size, (self.batch, T + 1), device=device)
        self.inputs, self.targets = ids[:, :-1], ids[:, 1:]

    def step(self) -> float:
        """One full training step (forward, loss, backward, AdamW, zero_grad); returns the loss."""
        with autocast_context(self.device, self.dtype):
            logits = self.lm(self.inputs)
        loss = F.cross_entropy(logits.float().flatten(0, 1), self.targets.flatten())
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())


def build_lm(layers: str, cfg: TrainConfig, T: int, d_model: int):
    """The benchmarked language model: ``layers`` at width ``d_model`` with a context of ``T``."""
    from linmix.models.lm import LanguageModel

    return LanguageModel(cfg.vocab_size, d_model=d_model, layers=layers, max_len=T, n_heads=cfg.n_heads)


def model_widths(cfg: TrainConfig, models: dict[str, str], T: int) -> dict[str, int]:
    """Each model's d_model at length T: ``cfg.d_model``, or with ``match_params`` the width whose parameter
    count is closest to the attention LM's at ``cfg.d_model`` (which keeps ``cfg.d_model``)."""
    if not cfg.match_params or BASELINE not in models:
        return {name: cfg.d_model for name in models}
    from linmix.compare.sizing import count_params, size_to_budget

    target = count_params(build_lm(models[BASELINE], cfg, T, cfg.d_model))
    return {name: cfg.d_model if name == BASELINE else
            size_to_budget(lambda d, lay=layers: build_lm(lay, cfg, T, d), target, multiple=2 * cfg.n_heads)[0]
            for name, layers in models.items()}


def train_memory_job(layers: str, config: dict, T: int, d_model: int | None = None) -> Callable[[], None]:
    """Fresh-process job: build the model and optimiser, take one warm-up step, return the measured step."""
    cfg = TrainConfig(**config)
    loop = TrainLoop(layers, cfg, T, torch.device(cfg.device), d_model)
    loop.step()
    return loop.step


def _peak(cfg: TrainConfig, name: str, layers: str, T: int, d_model: int, bar: Progress) -> float | None:
    """Peak extra memory of one training step in a fresh process (None when off or failed)."""
    if not cfg.memory:
        return None
    bar.step(f"T={T} memory {name}")
    probe = probe_memory("linmix.bench.train_speed:train_memory_job", dict(layers=layers, config=asdict(cfg), T=T, d_model=d_model),
                         device=cfg.device)
    bar.update(1)
    if not probe.get("ok"):
        bar.log(f"{name} T={T}: {probe.get('error')}")
    return probe.get("peak_extra_mib") if probe.get("ok") else None


def _step_times(cfg: TrainConfig, models: dict[str, str], T: int, device: torch.device,
                bar: Progress) -> tuple[dict, dict]:
    """Build every model at T, warm up, then time ``steps`` steps round-robin; (times, (batch, params))."""
    loops = {}
    widths = model_widths(cfg, models, T)
    for name, layers in models.items():
        bar.step(f"T={T} build {name}")
        loops[name] = TrainLoop(layers, cfg, T, device, widths[name])
        bar.update(1)
    times: dict[str, list[float]] = {name: [] for name in models}
    for s in range(cfg.warmup + cfg.steps):
        for name, loop in loops.items():
            warm = s < cfg.warmup
            bar.step(f"T={T} {'warm-up' if warm else 'step'} {name}")
            took = time_call(loop.step, device)
            if not warm:
                times[name].append(took)
            bar.update(1)
    return times, {name: (lp.batch, lp.params, lp.d_model) for name, lp in loops.items()}


def _length_rows(cfg: TrainConfig, models: dict[str, str], T: int, device: torch.device,
                 bar: Progress) -> list[dict]:
    """The records of one length, with each model's tokens/s over the attention LM's."""
    times, shapes = _step_times(cfg, models, T, device, bar)
    rows = []
    for name, layers in models.items():
        (batch, params, d_model), step_s = shapes[name], median(times[name])
        rows.append({"model": name, "layers": layers, "T": T, "batch_size": batch, "params": params,
                     "d_model": d_model, "dtype": cfg.dtype, "device": cfg.device, "steps": len(times[name]),
                     "step_ms": 1e3 * step_s, "step_ms_min": 1e3 * min(times[name]),
                     "tokens_per_s": batch * T / step_s, "peak_mem_mib": _peak(cfg, name, layers, T, d_model, bar)})
    ref = next((r["tokens_per_s"] for r in rows if r["model"] == BASELINE), None)
    for r in rows:
        r["speedup_vs_attention"] = r["tokens_per_s"] / ref if ref else None
    return rows


def run(config: TrainConfig, progress: bool = True) -> list[dict]:
    """Measure every (model, length); one record each."""
    device = resolve_device(config.device)
    config = replace(config, device=str(device))
    models = config.model_specs()
    lengths = parse_lengths(config.lengths)
    per = config.warmup + config.steps + 1 + (1 if config.memory else 0)
    rows: list[dict] = []
    with Progress(len(models) * len(lengths) * per, "bench train", progress) as bar:
        for T in lengths:
            mine = _length_rows(config, models, T, device, bar)
            bar.log(f"T={T}: " + ", ".join(f"{r['model']} {r['tokens_per_s']:.0f} tok/s" for r in mine))
            rows += mine
    return rows


def summarize(rows: list[dict], config: TrainConfig | None = None) -> dict:
    """Nothing beyond the records and the targets (the speedups are in the records)."""
    return {}


def markdown(result: dict) -> str:
    """The ``train.md`` tables: tokens/s, speedups, step times, peak memory, parameters, targets."""
    rows, cfg = result["rows"], result["meta"]["config"]

    def table(key: str, fmt) -> str:
        return pivot(rows, "model", "T", key, fmt, label=lambda r: f"{r['model']} (`{r['layers']}`)")

    batches = ", ".join(f"T={T}: B={max(1, cfg['tokens_per_step'] // T)}" for T in cfg["lengths"])
    width = ("D sized per model and length to the attention LM's parameters (see d_model below)"
             if cfg.get("match_params") else f"D={cfg['d_model']}")
    return sections(
        ("", f"{width}, {cfg['n_heads']} heads, FFN 4D, vocab {cfg['vocab_size']}, {cfg['dtype']}, "
             f"AdamW; {cfg['tokens_per_step']} tokens per step ({batches}); median of {cfg['steps']} steps after "
             f"{cfg['warmup']} warm-up, models interleaved; device {cfg['device']}."),
        ("Training throughput (tokens/s)", table("tokens_per_s", lambda v: f"{v:.0f}")),
        ("Speedup over the attention LM (tokens/s ratio)", table("speedup_vs_attention", lambda v: f"{v:.2f}x")),
        ("Step time (ms, median)", table("step_ms", lambda v: f"{v:.1f}")),
        ("Peak extra memory of one training step (MiB, fresh process)", table("peak_mem_mib", lambda v: f"{v:.0f}")),
        ("Parameters", table("params", lambda v: f"{v / 1e6:.2f}M")),
        ("d_model", table("d_model", lambda v: f"{v}")),
        ("Targets", targets_markdown(result["summary"]["targets"])),
    )


def plot(result: dict, out: Path) -> list[Path]:
    """``train_tokens_per_s.png``: grouped bars, one group per length, one bar per model."""
    from linmix.bench.plots import plot_bars

    rows, lengths = result["rows"], result["meta"]["config"]["lengths"]
    by = {(r["model"], r["T"]): r["tokens_per_s"] for r in rows}
    series = {m: [by.get((m, T)) for T in lengths] for m in dict.fromkeys(r["model"] for r in rows)}
    return [plot_bars([f"T={T}" for T in lengths], series, out / "train_tokens_per_s.png", "training tokens/s",
                      "end-to-end training throughput (fwd + bwd + AdamW)")]
