"""``linmix bench train``: end-to-end training throughput of same-size LMs vs sequence length.

Each model of :data:`linmix.bench.registry.TRAIN_MODELS` (4 layers, same D, heads, FFN and vocabulary; only
the mixers differ) runs a plain loop on random tokens: forward, next-token cross-entropy, backward,
``AdamW.step``, ``zero_grad``. The batch holds ``tokens_per_step`` tokens (``B = max(1, tokens // T)``), so
every length does comparable work per step. The models of one length are stepped round-robin (one step of
each, then again) after warm-up, and the median step time gives tokens/s. This loop is self-contained: it
does not use ``linmix.train``. With ``memory`` on, the peak extra memory of one training step is measured in
a fresh process.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from linmix.bench.registry import BASELINE, TRAIN_MODELS, parse_models
from linmix.bench.report import (md_table, rows_with_machine, shortfall, targets_markdown, write_csv, write_json,
                                 write_readme)
from linmix.bench.timing import (load_average, machine_info, median, num_threads, probe_memory, resolve_device,
                                 synchronize)

DEFAULT_LENGTHS = [512, 2048, 8192]
QUICK_LENGTHS = [256, 1024]


@dataclass
class TrainConfig:
    """What ``bench train`` measures (recorded in every output)."""

    lengths: list[int] = field(default_factory=lambda: list(DEFAULT_LENGTHS))
    models: str | None = None
    d_model: int = 256
    n_heads: int = 4
    vocab_size: int = 256
    tokens_per_step: int = 8192
    steps: int = 5
    warmup: int = 2
    lr: float = 3e-4
    memory: bool = True
    device: str = "auto"
    dtype: str = "float32"
    seed: int = 0
    threads: int | None = None
    quick: bool = False

    @classmethod
    def quick_preset(cls, **overrides) -> "TrainConfig":
        base = dict(lengths=list(QUICK_LENGTHS), tokens_per_step=2048, steps=2, warmup=1, memory=False, quick=True)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def validate(self) -> None:
        if self.steps < 1 or self.warmup < 0 or self.tokens_per_step <= 0:
            raise ValueError("steps must be >= 1, warmup >= 0, tokens per step > 0")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be float32 or bfloat16, got {self.dtype!r}")
        if not self.lengths or any(t <= 1 for t in self.lengths):
            raise ValueError(f"lengths must be integers > 1, got {self.lengths}")


class TrainLoop:
    """One model, its optimiser and a fixed random batch; :meth:`step` is one full training step."""

    def __init__(self, layers: str, cfg: TrainConfig, T: int, device: torch.device) -> None:
        from linmix.models.lm import LanguageModel

        torch.manual_seed(cfg.seed)
        self.device, self.dtype = device, cfg.dtype
        self.lm = LanguageModel(cfg.vocab_size, d_model=cfg.d_model, layers=layers, max_len=T,
                                n_heads=cfg.n_heads).to(device).train()
        self.params = sum(p.numel() for p in self.lm.parameters())
        self.opt = torch.optim.AdamW(self.lm.parameters(), lr=cfg.lr)
        self.batch = max(1, cfg.tokens_per_step // T)
        ids = torch.randint(0, cfg.vocab_size, (self.batch, T + 1), device=device)
        self.inputs, self.targets = ids[:, :-1], ids[:, 1:]

    def step(self) -> float:
        ctx = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.dtype == "bfloat16"
               else torch.autocast(self.device.type, enabled=False))
        with ctx:
            logits = self.lm(self.inputs)
        loss = F.cross_entropy(logits.float().flatten(0, 1), self.targets.flatten())
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())


def train_memory_job(layers: str, cfg: dict, T: int, device: str) -> Callable[[], None]:
    """Fresh-process job: build the model and optimiser, take one warm-up step, return the measured step."""
    loop = TrainLoop(layers, TrainConfig(**cfg), T, torch.device(device))
    loop.step()
    return loop.step


def run_train(config: TrainConfig, progress: bool = True, command: str | None = None,
              log: Callable[[str], None] | None = None) -> dict:
    """Measure every (model, length); return ``{"meta", "rows", "summary"}``."""
    config.validate()
    with num_threads(config.threads):
        return _run_train(config, progress=progress, command=command, log=log)


def _run_train(config: TrainConfig, progress: bool = True, command: str | None = None,
               log: Callable[[str], None] | None = None) -> dict:
    from linmix.bench.ops import _progress

    config.validate()
    load_before = load_average()
    device = resolve_device(config.device)
    models = parse_models(config.models, TRAIN_MODELS)
    lengths = sorted(set(config.lengths))
    say = log or (lambda msg: None)
    per = config.warmup + config.steps + 1 + (1 if config.memory else 0)
    bar = _progress(total=len(models) * len(lengths) * per, enabled=progress, desc="bench train")
    rows = []
    try:
        for T in lengths:
            loops, times = {}, {}
            for name, layers in models.items():
                bar.set_description(f"T={T} build {name}")
                loops[name] = TrainLoop(layers, config, T, device)
                times[name] = []
                bar.update(1)
            for w in range(config.warmup):
                for name, loop in loops.items():
                    bar.set_description(f"T={T} warm-up {name}")
                    loop.step()
                    bar.update(1)
            for s in range(config.steps):
                for name, loop in loops.items():
                    bar.set_description(f"T={T} step {name} ({s + 1}/{config.steps})")
                    synchronize(device)
                    start = time.perf_counter()
                    loop.step()
                    synchronize(device)
                    times[name].append(time.perf_counter() - start)
                    bar.update(1)
            meta_loops = {n: (lp.batch, lp.params) for n, lp in loops.items()}
            loops.clear()
            for name, layers in models.items():
                peak = None
                if config.memory:
                    bar.set_description(f"T={T} memory {name}")
                    probe = probe_memory("linmix.bench.train_speed:train_memory_job",
                                         dict(layers=layers, cfg=asdict(config), T=T, device=str(device)),
                                         device=device)
                    peak = probe.get("peak_extra_mib") if probe.get("ok") else None
                    if not probe.get("ok"):
                        say(f"{name} T={T}: {probe.get('error')}")
                    bar.update(1)
                batch, params = meta_loops[name]
                step_s = median(times[name])
                rows.append({"model": name, "layers": layers, "T": T, "batch_size": batch, "params": params,
                             "d_model": config.d_model, "dtype": config.dtype, "device": str(device),
                             "steps": len(times[name]), "step_ms": 1e3 * step_s,
                             "step_ms_min": 1e3 * min(times[name]), "tokens_per_s": batch * T / step_s,
                             "peak_mem_mib": peak})
            ref = next((r for r in rows if r["T"] == T and r["model"] == BASELINE), None)
            for r in rows:
                if r["T"] == T:
                    r["speedup_vs_attention"] = r["tokens_per_s"] / ref["tokens_per_s"] if ref else None
            say(f"T={T}: " + ", ".join(f"{r['model']} {r['tokens_per_s']:.0f} tok/s" for r in rows if r["T"] == T))
    finally:
        bar.close()
    meta = {"benchmark": "train", "command": command,
            "config": asdict(config) | {"lengths": lengths, "device": str(device), "models": models},
            "machine": machine_info(device) | {"load_average_before": load_before}}
    result = {"meta": meta, "rows": rows}
    result["summary"] = {"targets": train_targets(rows)}
    return result


def _speed(rows: list[dict], model: str, T: int) -> float | None:
    return next((r.get("speedup_vs_attention") for r in rows if r["model"] == model and r["T"] == T), None)


def train_targets(rows: list[dict]) -> list[dict]:
    out = []
    for model, need in (("summation", 2.3), ("hybrid", 1.7)):
        s2, s8 = _speed(rows, model, 2048), _speed(rows, model, 8192)
        out.append({"target": f"{model} LM >= {need}x attention LM tokens/s at T=2048",
                    "measured": "n/a" if s2 is None else f"{s2:.2f}x",
                    "status": "n/a" if s2 is None else ("met" if s2 >= need else "missed"),
                    "detail": "" if s2 is None or s2 >= need else shortfall(need, s2)})
        out.append({"target": f"{model} LM: more at T=8192 than at 2048",
                    "measured": "n/a" if s8 is None else f"{s8:.2f}x",
                    "status": "n/a" if s2 is None or s8 is None else ("met" if s8 > s2 else "missed"),
                    "detail": ""})
    return out


def train_markdown(result: dict) -> str:
    rows, cfg = result["rows"], result["meta"]["config"]
    lengths, models = cfg["lengths"], list(cfg["models"])

    def pivot(key: str, fmt) -> str:
        body = []
        for m in models:
            cells = []
            for T in lengths:
                r = next((r for r in rows if r["model"] == m and r["T"] == T), None)
                cells.append("" if r is None or r.get(key) is None else fmt(r[key]))
            body.append([f"{m} (`{cfg['models'][m]}`)"] + cells)
        return md_table(["model"] + [f"T={T}" for T in lengths], body)

    batches = ", ".join(f"T={T}: B={max(1, cfg['tokens_per_step'] // T)}" for T in lengths)
    parts = [
        f"D={cfg['d_model']}, {cfg['n_heads']} heads, FFN 4D, vocab {cfg['vocab_size']}, {cfg['dtype']}, AdamW; "
        f"{cfg['tokens_per_step']} tokens per step ({batches}); median of {cfg['steps']} steps after "
        f"{cfg['warmup']} warm-up, models interleaved; device {cfg['device']}.",
        "### Training throughput (tokens/s)", pivot("tokens_per_s", lambda v: f"{v:.0f}"),
        "### Speedup over the attention LM (tokens/s ratio)", pivot("speedup_vs_attention", lambda v: f"{v:.2f}x"),
        "### Step time (ms, median)", pivot("step_ms", lambda v: f"{v:.1f}"),
        "### Peak extra memory of one training step (MiB, fresh process)",
        pivot("peak_mem_mib", lambda v: f"{v:.0f}"),
        "### Parameters", pivot("params", lambda v: f"{v / 1e6:.2f}M"),
        "### Targets", targets_markdown(result["summary"]["targets"]),
    ]
    return "\n\n".join(parts) + "\n"


def write_train_outputs(result: dict, out: str | Path) -> list[Path]:
    from linmix.bench.plots import plot_bars

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows_with_machine(result), out / "train.csv")
    write_json(result, out / "train.json")
    md = train_markdown(result)
    (out / "train.md").write_text("# linmix bench train\n\n" + md)
    cfg = result["meta"]["config"]
    series = {m: [next((r["tokens_per_s"] for r in result["rows"] if r["model"] == m and r["T"] == T), None)
                  for T in cfg["lengths"]] for m in cfg["models"]}
    plot_bars([f"T={T}" for T in cfg["lengths"]], series, out / "train_tokens_per_s.png", "training tokens/s",
              "end-to-end training throughput (fwd + bwd + AdamW)")
    files = ["train.csv", "train.json", "train.md", "train_tokens_per_s.png"]
    write_readme(out, "linmix bench train: end-to-end training tokens/s", result, md, files)
    return [out / f for f in files] + [out / "README.md"]
