"""``linmix bench decode``: per-token latency and memory of ``LanguageModel.generate`` vs position.

For each model (:data:`linmix.bench.registry.DECODE_MODELS`: a summation stack, the hybrid with one attention
layer, pure attention with its KV cache) and each position p, an LM with ``max_len = p + new_tokens + 1``
gets a random prompt of p tokens and generates ``new_tokens + 1`` more through ``LanguageModel.generate``
(prefill, then one ``step`` per token). A ``stream`` callback timestamps every new token; the gaps between
consecutive tokens are the per-token latency at position ~p (one ``step`` through every layer, the output
head and the sampling). Positions are measured round-robin, ``repeats`` times, and the median gap is
reported.

Memory, per (model, position): ``state_mib``, the bytes of every tensor in the decoding state after the
prompt (what a long-running generation holds: O(D) per summation layer, O(p D) per attention layer), and
``generate_peak_mib``, the peak extra memory of the whole ``generate`` call (prefill included) in a fresh
process.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from linmix.bench.registry import DECODE_MODELS, parse_models
from linmix.models.spec import parse_layers
from linmix.bench.report import (loglog_slope, md_table, rows_with_machine, upper_half, write_csv, write_json,
                                 write_readme)
from linmix.bench.timing import (load_average, machine_info, median, num_threads, probe_memory, resolve_device,
                                 synchronize)

DEFAULT_POSITIONS = [128 * 2**i for i in range(8)]  # 128 ... 16384
QUICK_POSITIONS = [128, 1024, 4096]


@dataclass
class DecodeConfig:
    """What ``bench decode`` measures (recorded in every output)."""

    positions: list[int] = field(default_factory=lambda: list(DEFAULT_POSITIONS))
    models: str | None = None
    d_model: int = 256
    n_heads: int = 4
    vocab_size: int = 256
    new_tokens: int = 32
    repeats: int = 3
    memory: bool = True
    device: str = "auto"
    seed: int = 0
    threads: int | None = None
    quick: bool = False

    @classmethod
    def quick_preset(cls, **overrides) -> "DecodeConfig":
        base = dict(positions=list(QUICK_POSITIONS), new_tokens=16, repeats=2, quick=True)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def validate(self) -> None:
        if self.new_tokens < 2:
            raise ValueError(f"new tokens must be >= 2 (latency is the gap between tokens), got {self.new_tokens}")
        if self.repeats < 1 or self.d_model <= 0 or self.vocab_size <= 1:
            raise ValueError("repeats, d_model and vocab size must be positive")
        if not self.positions or any(p <= 0 for p in self.positions):
            raise ValueError(f"positions must be positive integers, got {self.positions}")


def build_lm(layers: str, d_model: int, n_heads: int, vocab_size: int, max_len: int, seed: int,
             device: torch.device):
    from linmix.models.lm import LanguageModel

    torch.manual_seed(seed)
    lm = LanguageModel(vocab_size, d_model=d_model, layers=layers, max_len=max_len, n_heads=n_heads)
    return lm.to(device).eval()


def state_bytes(state) -> int:
    """Bytes of every tensor inside a (nested) decoding state."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(v) for v in state)
    return 0


def token_gaps(lm, prompt: torch.Tensor, new_tokens: int, device: torch.device,
               seed: int) -> tuple[list[float], float]:
    """Run ``lm.generate``; return the gaps between consecutive new tokens (s) and the time to the first."""
    stamps: list[float] = []

    def stream(_token: torch.Tensor) -> None:
        synchronize(device)
        stamps.append(time.perf_counter())

    gen = torch.Generator(device=device).manual_seed(seed)
    synchronize(device)
    start = time.perf_counter()
    lm.generate(prompt, max_new_tokens=new_tokens + 1, temperature=1.0, stream=stream, generator=gen)
    return [b - a for a, b in zip(stamps, stamps[1:])], stamps[0] - start


def decode_memory_job(layers: str, d_model: int, n_heads: int, vocab_size: int, position: int, new_tokens: int,
                      device: str, seed: int) -> Callable[[], None]:
    """Fresh-process job: build the LM, warm up on a short prompt, return the measured ``generate``."""
    dev = torch.device(device)
    lm = build_lm(layers, d_model, n_heads, vocab_size, position + new_tokens + 1, seed, dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    prompt = torch.randint(0, vocab_size, (1, position), generator=gen, device=dev)
    lm.generate(prompt[:, :8], max_new_tokens=2, temperature=1.0)

    def run() -> None:
        lm.generate(prompt, max_new_tokens=new_tokens + 1, temperature=1.0)

    return run


def run_decode(config: DecodeConfig, progress: bool = True, command: str | None = None,
               log: Callable[[str], None] | None = None) -> dict:
    """Measure every (model, position); return ``{"meta", "rows", "summary"}``."""
    config.validate()
    with num_threads(config.threads):
        return _run_decode(config, progress=progress, command=command, log=log)


def _run_decode(config: DecodeConfig, progress: bool = True, command: str | None = None,
                log: Callable[[str], None] | None = None) -> dict:
    from linmix.bench.ops import _progress

    config.validate()
    load_before = load_average()
    device = resolve_device(config.device)
    models = parse_models(config.models, DECODE_MODELS)
    positions = sorted(set(config.positions))
    say = log or (lambda msg: None)
    total = len(models) * len(positions) * (config.repeats + (2 if config.memory else 1))
    bar = _progress(total=total, enabled=progress, desc="bench decode")
    rows = []
    try:
        for name, layers in models.items():
            lms, prompts, recs = {}, {}, {}
            for p in positions:
                bar.set_description(f"{name} p={p} build")
                lm = build_lm(layers, config.d_model, config.n_heads, config.vocab_size, p + config.new_tokens + 1,
                              config.seed, device)
                gen = torch.Generator(device=device).manual_seed(config.seed + p)
                prompt = torch.randint(0, config.vocab_size, (1, p), generator=gen, device=device)
                with torch.no_grad():
                    _, states = lm.encoder.prefill(prompt)
                recs[p] = {"gaps": [], "first": [], "state_mib": state_bytes(states) / 2**20}
                del states
                token_gaps(lm, prompt[:, : min(p, 16)], 2, device, config.seed)  # warm-up
                lms[p], prompts[p] = lm, prompt
                bar.update(1)
            for r in range(config.repeats):
                for p in positions:
                    bar.set_description(f"{name} p={p} generate ({r + 1}/{config.repeats})")
                    gaps, first = token_gaps(lms[p], prompts[p], config.new_tokens, device, config.seed + r)
                    recs[p]["gaps"] += gaps
                    recs[p]["first"].append(first)
                    bar.update(1)
            lms.clear()
            for p in positions:
                rec = recs[p]
                peak = None
                if config.memory:
                    bar.set_description(f"{name} p={p} memory")
                    probe = probe_memory("linmix.bench.decode:decode_memory_job",
                                         dict(layers=layers, d_model=config.d_model, n_heads=config.n_heads,
                                              vocab_size=config.vocab_size, position=p,
                                              new_tokens=config.new_tokens, device=str(device), seed=config.seed),
                                         device=device)
                    peak = probe.get("peak_extra_mib") if probe.get("ok") else None
                    if not probe.get("ok"):
                        say(f"{name} p={p}: {probe.get('error')}")
                    bar.update(1)
                gaps = rec["gaps"]
                rows.append({
                    "model": name, "layers": layers, "position": p, "d_model": config.d_model,
                    "device": str(device), "new_tokens": config.new_tokens, "samples": len(gaps),
                    "per_token_ms": 1e3 * median(gaps), "per_token_ms_min": 1e3 * min(gaps),
                    "tokens_per_s": 1.0 / median(gaps), "prefill_first_token_ms": 1e3 * median(rec["first"]),
                    "state_mib": rec["state_mib"], "generate_peak_mib": peak,
                })
            say(f"{name}: " + ", ".join(f"p={r['position']} {r['per_token_ms']:.2f}ms" for r in rows
                                        if r["model"] == name))
    finally:
        bar.close()
    meta = {"benchmark": "decode", "command": command,
            "config": asdict(config) | {"positions": positions, "device": str(device), "models": models},
            "machine": machine_info(device) | {"load_average_before": load_before}}
    result = {"meta": meta, "rows": rows}
    result["summary"] = summarize_decode(rows, positions, models)
    return result


def _lat(rows: list[dict], model: str, p: int) -> float | None:
    return next((r["per_token_ms"] for r in rows if r["model"] == model and r["position"] == p), None)


def summarize_decode(rows: list[dict], positions: list[int], models: dict[str, str]) -> dict:
    """Per model: latency at the last over the first position, log-log slopes; and the issue's targets."""
    lo, hi = positions[0], positions[-1]
    upper = upper_half(positions)
    out: dict = {"models": {}, "targets": []}
    for name in models:
        pts = [(r["position"], r["per_token_ms"], r["state_mib"]) for r in rows if r["model"] == name]
        a, b = _lat(rows, name, lo), _lat(rows, name, hi)
        top = [pt for pt in pts if pt[0] in upper]
        out["models"][name] = {
            "latency_ratio_last_first": b / a if a and b else None,
            "latency_slope": loglog_slope([p for p, _, _ in top], [v for _, v, _ in top]),
            "state_slope": loglog_slope([p for p, _, _ in top], [s for _, _, s in top]),
        }
    tg = out["targets"]
    if "summation" in models:
        ratio = out["models"]["summation"]["latency_ratio_last_first"]
        tg.append({"target": f"summation stack per-token latency at position {hi} within 1.1x of position {lo}",
                   "measured": "n/a" if ratio is None else f"{ratio:.3f}x",
                   "status": "n/a" if ratio is None else ("met" if ratio <= 1.1 else "missed"), "detail": ""})
    if {"hybrid", "attention"} <= set(models):
        # The hybrid's extra cost as the context grows must come from its attention layer(s) alone: its
        # latency growth p_min -> p should match that of n_att attention layers, i.e. the attention stack's
        # growth times n_att / n_layers (x1.2 for timing noise).
        n_att = sum(1 for n in parse_layers(models["hybrid"]) if n == "attention")
        n_all = len(parse_layers(models["attention"]))
        h0, a0 = _lat(rows, "hybrid", lo), _lat(rows, "attention", lo)
        parts = []
        for p in positions[1:]:
            h, a = _lat(rows, "hybrid", p), _lat(rows, "attention", p)
            if None in (h, a, h0, a0):
                continue
            share = (a - a0) * n_att / n_all  # what its attention layer(s) add, going by the attention stack
            parts.append((p, h - h0, share))
        last = parts[-1] if parts else None
        ok = None if last is None else last[1] <= 1.2 * max(last[2], 0.0) + 0.05
        tg.append({"target": f"hybrid per-token latency bounded by its {n_att} attention layer(s): growth "
                             f"p={lo} -> {hi} <= 1.2 x (attention-stack growth x {n_att}/{n_all})",
                   "measured": "n/a" if last is None else
                   f"{last[1]:+.2f} ms vs attention share {last[2]:+.2f} ms",
                   "status": "n/a" if ok is None else ("met" if ok else "missed"),
                   "detail": ", ".join(f"p={p}: {g:+.2f} vs {sh:+.2f}" for p, g, sh in parts)})
    return out


def decode_markdown(result: dict) -> str:
    rows, summary, cfg = result["rows"], result["summary"], result["meta"]["config"]
    positions = cfg["positions"]
    models = list(cfg["models"])

    def pivot(key: str, fmt) -> str:
        body = []
        for m in models:
            cells = []
            for p in positions:
                r = next((r for r in rows if r["model"] == m and r["position"] == p), None)
                cells.append("" if r is None or r.get(key) is None else fmt(r[key]))
            body.append([f"{m} (`{cfg['models'][m]}`)"] + cells)
        return md_table(["model"] + [f"p={p}" for p in positions], body)

    parts = [
        f"D={cfg['d_model']}, {cfg['n_heads']} heads, vocab {cfg['vocab_size']}, batch 1, "
        f"{cfg['new_tokens']} new tokens x {cfg['repeats']} rounds per position; device {cfg['device']}.",
        "### Per-token latency (ms, median gap between generated tokens)",
        pivot("per_token_ms", lambda v: f"{v:.3f}"),
        "### Decoding state held after the prompt (MiB)", pivot("state_mib", lambda v: f"{v:.3f}"),
        "### Peak extra memory of the whole generate call, prefill included (MiB, fresh process)",
        pivot("generate_peak_mib", lambda v: f"{v:.1f}"),
        "### Time to the first token (prefill + first sample, ms)", pivot("prefill_first_token_ms",
                                                                             lambda v: f"{v:.1f}"),
    ]
    body = [[m, "n/a" if i["latency_ratio_last_first"] is None else f"{i['latency_ratio_last_first']:.3f}x",
             "n/a" if i["latency_slope"] is None else f"{i['latency_slope']:.3f}",
             "n/a" if i["state_slope"] is None else f"{i['state_slope']:.3f}"]
            for m, i in summary["models"].items()]
    parts += [f"### Growth with position (p={positions[0]} -> {positions[-1]})",
              md_table(["model", "latency last / first", "latency log-log slope (upper half)",
                        "state log-log slope"], body)]
    if summary["targets"]:
        from linmix.bench.report import targets_markdown

        parts += ["### Targets", targets_markdown(summary["targets"])]
    return "\n\n".join(parts) + "\n"


def write_decode_outputs(result: dict, out: str | Path) -> list[Path]:
    from linmix.bench.plots import plot_lines

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows_with_machine(result), out / "decode.csv")
    write_json(result, out / "decode.json")
    md = decode_markdown(result)
    (out / "decode.md").write_text("# linmix bench decode\n\n" + md)
    models = list(result["meta"]["config"]["models"])
    lat = {m: [(r["position"], r["per_token_ms"]) for r in result["rows"] if r["model"] == m] for m in models}
    plot_lines(lat, out / "decode_latency.png", "position (prompt length)", "per-token latency (ms)",
               "LanguageModel.generate: per-token latency vs position")
    mem = {m: [(r["position"], r["state_mib"]) for r in result["rows"] if r["model"] == m] for m in models}
    plot_lines(mem, out / "decode_state.png", "position (prompt length)", "decoding state (MiB)",
               "decoding state held after the prompt")
    files = ["decode.csv", "decode.json", "decode.md", "decode_latency.png", "decode_state.png"]
    write_readme(out, "linmix bench decode: per-token generation cost vs position", result, md, files)
    return [out / f for f in files] + [out / "README.md"]
