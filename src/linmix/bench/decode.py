"""``linmix bench decode``: per-token latency and memory of ``LanguageModel.generate`` vs position.

For each model (:data:`linmix.bench.registry.DECODE_MODELS`: a summation stack, the hybrid with one attention
layer, pure attention with its KV cache) and each position p, an LM with ``max_len = p + new_tokens + 1``
gets a random prompt of p tokens and generates ``new_tokens + 1`` more through ``LanguageModel.generate``
(prefill, then one ``step`` per token). A ``stream`` callback timestamps every new token; the gaps between
consecutive tokens are the per-token latency at position ~p (one ``step`` through every layer, the output
head and the sampling). Positions are measured round-robin, ``repeats`` times; the median gap and the mean
gap are reported. They differ for the spectral stacks, whose exact streaming convolution
(:mod:`linmix.ops.fftconv.online`) does a block of size U of FFT work every U tokens: a few tokens of the
window are slow and the mean is the honest per-token cost over it.

With ``continuous=True`` each model instead generates once from a prompt of the first position's length
through the last position (65,536 tokens for ``--positions 128:65536``): the per-token latency at p is the
median gap of the ``new_tokens`` tokens generated after position p of that one run. A length-free model (every
mixer and the positional scheme defined at any length, e.g. ``--positional none`` and
``summation(positions=sinusoidal)``) is built with ``max_len`` = the first position, so the run also shows it
generating far past its ``max_len``; any other model gets ``max_len`` = the last position + new tokens.

Memory, per (model, position): ``state_mib``, the bytes of every tensor in the decoding state after the
prompt (what a long-running generation holds: O(D) per summation layer, O(p D) per attention layer), and
``generate_peak_mib``, the peak extra memory of the whole ``generate`` call (prefill included) in a fresh
process. Layer specs (``--models name=layers``) go to the model unchanged, inline options included.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import torch

from linmix.bench.base import LMBenchConfig
from linmix.bench.memprobe import probe_memory
from linmix.bench.progress import Progress
from linmix.bench.registry import DECODE_MODELS, parse_lengths
from linmix.bench.report import md_table, pivot, sections, targets_markdown
from linmix.bench.stats import series, upper_slope
from linmix.bench.timing import median, resolve_device, synchronize

TITLE = "linmix bench decode: per-token generation cost vs position"
DEFAULT_POSITIONS = [128 * 2**i for i in range(8)]  # 128 ... 16384
QUICK_POSITIONS = [128, 1024, 4096]


@dataclass
class DecodeConfig(LMBenchConfig):
    """What ``bench decode`` measures (recorded in every output)."""

    positions: list[int] = field(default_factory=lambda: list(DEFAULT_POSITIONS))
    new_tokens: int = 32
    repeats: int = 3
    positional: str = "learned"
    continuous: bool = False

    QUICK: ClassVar[dict] = dict(positions=QUICK_POSITIONS, new_tokens=16, repeats=2)
    MODELS: ClassVar[dict[str, str]] = DECODE_MODELS

    def validate(self) -> None:
        """``ValueError`` for a setting no run could use (before anything is built)."""
        super().validate()
        if self.new_tokens < 2:
            raise ValueError(f"new tokens must be >= 2 (latency is the gap between tokens), got {self.new_tokens}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        parse_lengths(self.positions)
        from linmix.config import POSITIONAL

        if self.positional not in POSITIONAL:
            raise ValueError(f"unknown positional {self.positional!r}; choose one of {', '.join(POSITIONAL)}")

    def describe(self) -> dict:
        """The config as recorded, with the positions and models resolved."""
        return super().describe() | {"positions": parse_lengths(self.positions)}


Config = DecodeConfig  # the bench interface (see linmix.bench.runner)


def build_lm(layers: str, cfg: DecodeConfig, max_len: int, device: torch.device):
    """The LM of one point (seeded: every model starts from the same draw)."""
    from linmix.models.lm import LanguageModel

    torch.manual_seed(cfg.seed)
    lm = LanguageModel(cfg.vocab_size, d_model=cfg.d_model, layers=layers, max_len=max_len, n_heads=cfg.n_heads,
                       positional=cfg.positional)
    return lm.to(device).eval()


def state_bytes(state) -> int:
    """Bytes of every tensor inside a (nested) decoding state: tensors, dicts, sequences, state objects
    (a mixer's state reports its own, :meth:`~linmix.mixers.base.MixerState.nbytes`)."""
    if hasattr(state, "nbytes") and callable(state.nbytes):
        return int(state.nbytes())
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(v) for v in state)
    if hasattr(state, "__dict__") and not isinstance(state, type):  # a mixer's state class (KVState...)
        return state_bytes(vars(state))
    if hasattr(state, "__slots__"):
        return sum(state_bytes(getattr(state, k, None)) for k in state.__slots__)
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


def _prompt(cfg: DecodeConfig, p: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator(device=device).manual_seed(cfg.seed + p)
    return torch.randint(0, cfg.vocab_size, (1, p), generator=gen, device=device)


def decode_memory_job(layers: str, config: dict, position: int) -> Callable[[], None]:
    """Fresh-process job: build the LM, warm up on a short prompt, return the measured ``generate``."""
    cfg = DecodeConfig(**config)
    dev = torch.device(cfg.device)
    lm = build_lm(layers, cfg, position + cfg.new_tokens + 1, dev)
    prompt = _prompt(cfg, position, dev)
    lm.generate(prompt[:, :8], max_new_tokens=2, temperature=1.0)
    return lambda: lm.generate(prompt, max_new_tokens=cfg.new_tokens + 1, temperature=1.0)


def _prepare(cfg: DecodeConfig, layers: str, p: int, device: torch.device) -> tuple:
    """Build the point's LM and prompt, record its decoding-state size, warm it up."""
    lm = build_lm(layers, cfg, p + cfg.new_tokens + 1, device)
    prompt = _prompt(cfg, p, device)
    with torch.no_grad():
        _, states = lm.encoder.prefill(prompt)
    token_gaps(lm, prompt[:, : min(p, 16)], 2, device, cfg.seed)  # warm-up
    return lm, prompt, state_bytes(states) / 2**20


def _peak(cfg: DecodeConfig, name: str, layers: str, p: int, bar: Progress) -> float | None:
    """Peak extra memory of the whole ``generate`` in a fresh process (None when off or failed)."""
    if not cfg.memory:
        return None
    bar.step(f"{name} p={p} memory")
    probe = probe_memory("linmix.bench.decode:decode_memory_job",
                         dict(layers=layers, config=asdict(cfg), position=p), device=cfg.device)
    bar.update(1)
    if not probe.get("ok"):
        bar.log(f"{name} p={p}: {probe.get('error')}")
    return probe.get("peak_extra_mib") if probe.get("ok") else None


def _measure_model(cfg: DecodeConfig, name: str, layers: str, positions: list[int], device: torch.device,
                   bar: Progress) -> list[dict]:
    """The records of one model: every position built, then timed round-robin ``repeats`` times."""
    points, gaps, firsts = {}, {p: [] for p in positions}, {p: [] for p in positions}
    for p in positions:
        bar.step(f"{name} p={p} build")
        points[p] = _prepare(cfg, layers, p, device)
        bar.update(1)
    for r in range(cfg.repeats):
        for p in positions:
            bar.step(f"{name} p={p} generate ({r + 1}/{cfg.repeats})")
            g, first = token_gaps(points[p][0], points[p][1], cfg.new_tokens, device, cfg.seed + r)
            gaps[p] += g
            firsts[p].append(first)
            bar.update(1)
    states = {p: points[p][2] for p in positions}
    points.clear()
    return [_record(cfg, name, layers, p, gaps[p], firsts[p], states[p], p + cfg.new_tokens + 1,
                    _peak(cfg, name, layers, p, bar)) for p in positions]


def _continuous_max_len(cfg: DecodeConfig, layers: str, positions: list[int]) -> int:
    """The first position for a length-free model (it generates past ``max_len``), else room for the run."""
    probe = build_lm(layers, cfg, positions[0], torch.device("cpu"))
    return positions[0] if probe.length_free else positions[-1] + cfg.new_tokens + 1


def _measure_continuous(cfg: DecodeConfig, name: str, layers: str, positions: list[int], device: torch.device,
                        bar: Progress) -> list[dict]:
    """The records of one model from ``repeats`` single generations running from the first position through
    the last: the gaps after each position p are that position's samples."""
    p0, end = positions[0], positions[-1]
    max_len = _continuous_max_len(cfg, layers, positions)
    states, gaps, firsts = {}, {p: [] for p in positions}, []
    for p in positions:
        bar.step(f"{name} p={p} state")
        lm = build_lm(layers, cfg, max(max_len, p + 1), device)
        with torch.no_grad():
            states[p] = state_bytes(lm.encoder.prefill(_prompt(cfg, p, device))[1]) / 2**20
        bar.update(1)
    lm = build_lm(layers, cfg, max_len, device)
    prompt = _prompt(cfg, p0, device)
    token_gaps(lm, prompt[:, : min(p0, 16)], 2, device, cfg.seed)  # warm-up
    for r in range(cfg.repeats):
        bar.step(f"{name} generate {end - p0 + cfg.new_tokens} tokens ({r + 1}/{cfg.repeats})")
        g, first = token_gaps(lm, prompt, end - p0 + cfg.new_tokens, device, cfg.seed + r)
        firsts.append(first)
        for p in positions:  # gap j is the step that read the token at position p0 + 1 + j
            gaps[p] += g[p - p0: p - p0 + cfg.new_tokens]
        bar.update(1)
    return [_record(cfg, name, layers, p, gaps[p], firsts if p == p0 else None, states[p], max_len,
                    _peak(cfg, name, layers, p, bar)) for p in positions]


def _record(cfg: DecodeConfig, name: str, layers: str, p: int, gaps: list[float], firsts: list[float] | None,
            state: float, max_len: int, peak: float | None) -> dict:
    return {"model": name, "layers": layers, "position": p, "d_model": cfg.d_model, "device": cfg.device,
            "positional": cfg.positional, "max_len": max_len, "new_tokens": cfg.new_tokens, "samples": len(gaps),
            "per_token_ms": 1e3 * median(gaps), "per_token_ms_mean": 1e3 * sum(gaps) / len(gaps),
            "per_token_ms_min": 1e3 * min(gaps), "tokens_per_s": 1.0 / median(gaps),
            "prefill_first_token_ms": 1e3 * median(firsts) if firsts else None, "state_mib": state,
            "generate_peak_mib": peak}


def run(config: DecodeConfig, progress: bool = True) -> list[dict]:
    """Measure every (model, position); one record each."""
    device = resolve_device(config.device)
    config = replace(config, device=str(device))
    models = config.model_specs()
    positions = parse_lengths(config.positions)
    per_point = 1 + (1 if config.memory else 0) + (0 if config.continuous else config.repeats)
    total = len(models) * (len(positions) * per_point + (config.repeats if config.continuous else 0))
    measure = _measure_continuous if config.continuous else _measure_model
    rows: list[dict] = []
    with Progress(total, "bench decode", progress) as bar:
        for name, layers in models.items():
            mine = measure(config, name, layers, positions, device, bar)
            bar.log(f"{name}: " + ", ".join(f"p={r['position']} {r['per_token_ms']:.2f}ms" for r in mine))
            rows += mine
    return rows


def summarize(rows: list[dict], config: DecodeConfig | None = None) -> dict:
    """Per model: latency at the last over the first position, and log-log slopes of latency and state."""
    positions = sorted({r["position"] for r in rows})
    out: dict = {"models": {}}
    for name in dict.fromkeys(r["model"] for r in rows):
        lat = series(rows, "model", name, "position", "per_token_ms")
        first, last = lat.get(positions[0]), lat.get(positions[-1])
        out["models"][name] = {
            "latency_ratio_last_first": last / first if first and last else None,
            "latency_slope": upper_slope(lat, positions),
            "state_slope": upper_slope(series(rows, "model", name, "position", "state_mib"), positions),
        }
    return out


def _fmt(x, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def markdown(result: dict) -> str:
    """The ``decode.md`` tables: latency, state, peak memory, time to first token, growth, targets."""
    rows, summary, cfg = result["rows"], result["summary"], result["meta"]["config"]
    positions = cfg["positions"]

    def table(key: str, spec: str) -> str:
        return pivot(rows, "model", "position", key, lambda v: format(v, spec),
                     label=lambda r: f"{r['model']} (`{r['layers']}`)", prefix="p=")

    growth = [[m, _fmt(i["latency_ratio_last_first"], ".3f") + "x" * (i["latency_ratio_last_first"] is not None),
               _fmt(i["latency_slope"], ".3f"), _fmt(i["state_slope"], ".3f")] for m, i in summary["models"].items()]
    return sections(
        ("", f"D={cfg['d_model']}, {cfg['n_heads']} heads, vocab {cfg['vocab_size']}, batch 1, "
             f"positional {cfg.get('positional', 'learned')}, {cfg['new_tokens']} new tokens x {cfg['repeats']} "
             f"rounds per position; device {cfg['device']}." + _mode_line(rows, cfg)),
        ("Per-token latency (ms, median gap between generated tokens)", table("per_token_ms", ".3f")),
        ("Decoding state held after the prompt (MiB)", table("state_mib", ".3f")),
        ("Peak extra memory of the whole generate call, prefill included (MiB, fresh process)",
         table("generate_peak_mib", ".1f")),
        ("Time to the first token (prefill + first sample, ms)", table("prefill_first_token_ms", ".1f")),
        (f"Growth with position (p={positions[0]} -> {positions[-1]})",
         md_table(["model", "latency last / first", "latency log-log slope (upper half)", "state log-log slope"],
                  growth)),
        ("Targets", targets_markdown(summary["targets"])),
    )


def _mode_line(rows: list[dict], cfg: dict) -> str:
    if not cfg.get("continuous"):
        return " Each position: its own prompt of p tokens, then the timed tokens."
    lens = ", ".join(f"{m} {r['max_len']}" for m, r in {r["model"]: r for r in rows}.items())
    return (f" Continuous: one generation per round from a {cfg['positions'][0]}-token prompt through the last "
            f"position; max_len per model: {lens}.")


def plot(result: dict, out: Path) -> list[Path]:
    """``decode_latency.png`` (per-token latency) and ``decode_state.png`` (state size) vs position."""
    from linmix.bench.plots import plot_lines

    def lines(key: str) -> dict:
        return {m: sorted(series(result["rows"], "model", m, "position", key).items())
                for m in dict.fromkeys(r["model"] for r in result["rows"])}

    return [plot_lines(lines("per_token_ms"), out / "decode_latency.png", "position (prompt length)",
                       "per-token latency (ms)", "LanguageModel.generate: per-token latency vs position"),
            plot_lines(lines("state_mib"), out / "decode_state.png", "position (prompt length)",
                       "decoding state (MiB)", "decoding state held after the prompt")]
