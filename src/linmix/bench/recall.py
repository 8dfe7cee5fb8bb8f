"""``linmix bench recall``: multi-query associative recall (MQAR, Zoology's task) for every causal mixer.

Each registered mixer that has a causal form (``supports_causal``; FNet and every other bidirectional-only
mixer are left out, as they see the future, and the output says so) is trained as a 2-layer LM, with and/or
without the MLP (``ffn_mult=0``: Zoology's models with an identity state mixer in place of the MLP), at
every width of ``d_models``, plus the ``hybrids`` (2-layer specs such as ``summation,attention``), on every
``(T, kv)`` of ``sizes`` (:mod:`linmix.data.synthetic.mqar`), for every learning rate of ``lrs`` and
``seeds`` seeds. The training loop is :mod:`linmix.bench.recall_train`. A record is one (model, width, MLP,
size) at its best learning rate (highest mean test accuracy over seeds): accuracy mean and spread over
seeds, steps to the target accuracy, the decoding-state bytes after a length-T prompt, chance (1 / kv: a
guess among the example's values) and, for ``local_attention`` stacks, the window's analytic ceiling.

Budget: with ``out`` set every finished run is appended to ``<out>/recall_runs.jsonl`` at once and a rerun
skips the runs already there; ``cut="seeds"`` keeps all ``seeds`` only at the headline size (128, 8) and one
seed elsewhere, ``cut="sizes"`` also keeps only the (64, 4), (128, 8), (256, 16) ladder. ``check=True`` is the
harness check: attention, d=64, (128, 8), one seed, the configured budget (:func:`harness_check`).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from linmix.bench.base import BenchConfig
from linmix.bench.progress import Progress
from linmix.bench.recall_report import markdown, plot  # noqa: F401  (the bench interface)
from linmix.bench.recall_train import append_run, build_model, fixed_sets, load_done, run_key, state_bytes, train_run
from linmix.bench.stats import best_lr

TITLE = "linmix bench recall: multi-query associative recall (MQAR) vs state size"
HEADLINE = (128, 8)
LADDER = [(64, 4), (128, 8), (256, 16)]
DEFAULT_SIZES = LADDER + [(256, 4), (256, 8), (256, 32), (256, 64)]
DEFAULT_HYBRIDS = ["summation,attention", "spectral,local_attention(window=32)"]
#: how a registered mixer is built when the default mixer list is used: local attention's default window (128)
#: would see every key at the headline T = 128, so it runs with a window of 32 (its ceiling is reported)
DEFAULT_SPECS = {"local_attention": "local_attention(window=32)"}
MLP_MODES = {"on": (True,), "off": (False,), "both": (True, False)}
CUTS = ("none", "seeds", "sizes")
RUNS_FILE = "recall_runs.jsonl"
#: mixers with a softmax window, whose analytic ceiling is printed beside their score
WINDOWED = ("local_attention", "window_linear_attention")


def parse_sizes(spec) -> list[tuple[int, int]]:
    """``"64x4,128x8"`` or ``[(64, 4), ...]`` -> ``[(T, kv), ...]`` (order kept, repeats dropped)."""
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        try:
            T, kv = (int(v) for v in (item.lower().split("x") if isinstance(item, str) else item))
        except (ValueError, TypeError):
            raise ValueError(f"sizes must look like 64x4,128x8 (T x kv pairs), got {spec!r}") from None
        out.append((T, kv))
    return list(dict.fromkeys(out))


def _floats(spec) -> list[float]:
    return [float(v) for v in (spec.split(",") if isinstance(spec, str) else spec) if str(v).strip()]


def _ints(spec) -> list[int]:
    return [int(v) for v in (spec.split(",") if isinstance(spec, str) else spec) if str(v).strip()]


def mixer_name(spec: str) -> str:
    """The registered name of a one-mixer spec (``local_attention(window=64)`` -> ``local_attention``)."""
    return spec.split("(", 1)[0].strip()


@dataclass
class RecallConfig(BenchConfig):
    """What ``bench recall`` trains (recorded in every output). Strings are parsed: ``sizes="64x4,128x8"``,
    ``lrs="1e-3,3e-3"``, ``d_models="64,128"``, ``hybrids="summation,attention;spectral,local_attention"``."""

    d_model: int | None = None  # --d-model: one width instead of d_models
    d_models: list[int] = field(default_factory=lambda: [64, 128])
    mixers: list[str] | None = None  # None: every registered mixer with a causal form
    hybrids: list[str] = field(default_factory=lambda: list(DEFAULT_HYBRIDS))
    sizes: list[tuple[int, int]] = field(default_factory=lambda: list(DEFAULT_SIZES))
    # Defaults: the cheapest setting found at which 2-layer attention (d=64) crosses 0.99 at (T=128, kv=8) on
    # all three seeds at one learning rate, on this generator on 2 CPU cores: vocabulary 256, zero filler, 4
    # heads, no MLP, rotary positions, AdamW (betas 0.9/0.98, no weight decay), batch 64, 200 warm-up steps
    # then a constant LR for up to 3,000 steps. At lr 3e-3 the three random seeds crossed at 2,750, 2,750 and 1,500 steps.
    # Warm-up + cosine over 2,000 steps failed: at lr 1e-2 one random seed never left the 1/kv plateau (0.13) and at
    # 3e-3 the decaying LR left two random seeds at 0.93 and 0.78; for that random seed 1 head (lr 1e-2), batch 128 (1e-2,
    # stopped at 1,500 steps) and lr 5e-3 stayed at 0.13, 0.13 and 0.28. With learned absolute positions instead of rotary, the same model sat on the plateau
    # (0.13 at (128, 8), 0.25 at (64, 4)) for every setting tried (lr 3e-3 to 3e-2, 1,250-5,500 steps).
    mlp: str = "off"
    lrs: list[float] = field(default_factory=lambda: [3e-3, 1e-2, 2e-2])
    seeds: int = 3
    cut: str = "none"
    vocab_size: int = 256
    power_a: float = 0.01
    random_filler: bool = False
    batch_size: int = 64
    max_steps: int = 3000
    eval_every: int = 250
    warmup_steps: int = 200
    schedule: str = "constant"
    weight_decay: float = 0.0
    beta2: float = 0.98
    grad_clip: float = 1.0
    n_heads: int = 4
    ffn_mult: int = 4
    positional: str = "rotary"  # rotary in attention-family mixers; the others keep their own positions
    target_accuracy: float = 0.99
    val_examples: int = 256
    test_examples: int = 1000
    check: bool = False
    report_only: bool = False  # tabulate the runs in the resume file; train nothing (the rest: "not run")
    out: str | None = None  # folder of the resume file (None: nothing written, nothing skipped)

    QUICK: ClassVar[dict] = dict(mixers=["attention", "summation"], hybrids=[], sizes=[(64, 4)], d_models=[64],
                                 seeds=1, lrs=[3e-3], max_steps=300, eval_every=50, warmup_steps=30,
                                 val_examples=128, test_examples=256)

    def __post_init__(self) -> None:
        self.d_models = [self.d_model] if self.d_model is not None else _ints(self.d_models)
        if isinstance(self.mixers, str):
            from linmix.bench.registry import split_specs

            self.mixers = split_specs(self.mixers)
        if isinstance(self.hybrids, str):
            self.hybrids = [h.strip() for h in self.hybrids.split(";") if h.strip()]
        self.sizes, self.lrs = parse_sizes(self.sizes), _floats(self.lrs)
        if self.check:
            self.mixers, self.hybrids, self.sizes, self.d_models, self.seeds = ["attention"], [], [HEADLINE], [64], 1

    def validate(self) -> None:
        """``ValueError`` for a setting no run could use (before anything is trained)."""
        from linmix.data.synthetic.mqar import MQARConfig
        from linmix.mixers.registry import check_mixer_name

        if self.threads is not None and self.threads <= 0:
            raise ValueError(f"threads must be positive, got {self.threads}")
        if not self.d_models or any(d <= 0 for d in self.d_models):
            raise ValueError(f"widths must be positive, got {self.d_models}")
        if self.mlp not in MLP_MODES or self.cut not in CUTS or self.schedule not in ("cosine", "constant"):
            raise ValueError(f"mlp must be one of {list(MLP_MODES)}, cut one of {list(CUTS)}, schedule cosine or "
                             f"constant; got {self.mlp!r}, {self.cut!r}, {self.schedule!r}")
        if not self.lrs or any(lr <= 0 for lr in self.lrs) or self.seeds < 1:
            raise ValueError(f"need learning rates > 0 and seeds >= 1, got {self.lrs}, {self.seeds}")
        if min(self.batch_size, self.max_steps, self.eval_every, self.val_examples, self.test_examples) < 1:
            raise ValueError("batch_size, max_steps, eval_every, val_examples and test_examples must be >= 1")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.grad_clip < 0 or self.ffn_mult < 1:
            raise ValueError("warmup_steps, weight_decay and grad_clip must be >= 0, ffn_mult >= 1")
        if not 0 < self.target_accuracy <= 1:
            raise ValueError(f"target_accuracy must lie in (0, 1], got {self.target_accuracy}")
        if not self.sizes:
            raise ValueError("no (T, kv) size to run")
        for T, kv in self.sizes:
            MQARConfig(self.vocab_size, T, kv, self.power_a, self.random_filler)
        for spec in self.mixers or []:
            check_mixer_name(mixer_name(spec))
        if not self.models():
            raise ValueError("no causal model to train (every mixer asked for is bidirectional only)")

    def models(self) -> dict[str, str]:
        """Model label -> 2-layer spec: each causal mixer twice, then the hybrids as written."""
        from linmix.mixers.registry import MIXERS

        mixers = self.mixers if self.mixers is not None else [DEFAULT_SPECS.get(m, m) for m in MIXERS]
        out = {m: f"{m},{m}" for m in mixers if MIXERS[mixer_name(m)].supports_causal}
        return out | {h: h for h in self.hybrids}

    def excluded(self) -> dict[str, str]:
        """Mixer -> why it is left out (bidirectional only: a causal LM of it would see the future)."""
        from linmix.mixers.registry import MIXERS

        asked = self.mixers if self.mixers is not None else list(MIXERS)
        return {m: "bidirectional only (it sees the future); not a causal LM" for m in asked
                if not MIXERS[mixer_name(m)].supports_causal}

    def plan_sizes(self) -> list[tuple[int, int]]:
        """The sizes run after the cut."""
        return [s for s in self.sizes if s in LADDER] if self.cut == "sizes" else list(self.sizes)

    def seeds_at(self, size: tuple[int, int]) -> list[int]:
        """The random seeds run at ``size`` (one away from the headline size once seeds are cut)."""
        n = self.seeds if self.cut == "none" or size == HEADLINE else 1
        return [self.seed + i for i in range(n)]

    def cut_note(self) -> str:
        """What this grid leaves out of the full one (widths 64 and 128, 3 seeds, every default size), in
        words (empty when nothing was)."""
        notes = []
        if self.seeds < 3:
            notes.append(f"seeds cut: {self.seeds} per point")
        elif self.cut != "none":
            notes.append(f"seeds cut: {self.seeds} at (T, kv) = {HEADLINE}, 1 elsewhere")
        missing = [d for d in (64, 128) if d not in self.d_models]
        if missing:
            notes.append("widths cut: d=" + ", ".join(map(str, missing)) + " not run")
        dropped = [s for s in DEFAULT_SIZES if s not in self.plan_sizes()]
        if dropped:
            notes.append("sizes cut: " + ", ".join(f"({T}, {kv})" for T, kv in dropped) + " not run")
        return "; ".join(notes)

    def describe(self) -> dict:
        return super().describe() | {"models": self.models(), "excluded": self.excluded(),
                                     "sizes": [list(s) for s in self.plan_sizes()], "cut_note": self.cut_note()}


Config = RecallConfig  # the bench interface (see linmix.bench.runner)


def plan(cfg: RecallConfig) -> list[dict]:
    """Every run of the config, in the order they train (size, width, MLP, model, lr, seed); the headline
    size (128, 8) goes first, so a grid stopped part-way has its headline table complete."""
    runs = []
    sizes = cfg.plan_sizes()
    for T, kv in sorted(sizes, key=lambda s: s != HEADLINE):
        for d in cfg.d_models:
            for mlp in MLP_MODES[cfg.mlp]:
                for label, layers in cfg.models().items():
                    for lr in cfg.lrs:
                        runs += [dict(model=label, layers=layers, d_model=d, T=T, kv=kv, lr=lr, seed=s, mlp=mlp)
                                 for s in cfg.seeds_at((T, kv))]
    return runs


def _window(layers: str) -> int | None:
    """The softmax window of a stack of windowed-attention layers only (None for any other stack).

    ``window_linear_attention`` counts too: its ceiling is that of its softmax window, which its linear part
    (a sum over every older token) can read past."""
    from linmix.mixers.registry import mixer_options
    from linmix.models.spec import parse_layer_specs

    specs = parse_layer_specs(layers)
    if any(s.name not in WINDOWED for s in specs):
        return None
    return min(int(s.merged(None).get("window", mixer_options(s.name)["window"])) for s in specs)


def run(config: RecallConfig, progress: bool = True) -> list[dict]:
    """Train every planned run not already in the resume file; one record per (model, width, MLP, size)."""
    from linmix.bench.timing import resolve_device
    from linmix.data.synthetic.mqar import window_ceiling

    device = resolve_device(config.device)
    path = Path(config.out) / RUNS_FILE if config.out else None
    done, passed_over = load_done(path, config)
    todo = plan(config)
    sets: dict = {}
    with Progress(len(todo), "bench recall", progress) as bar:
        for m, why in config.excluded().items():
            bar.log(f"excluded {m}: {why}")
        if passed_over:
            bar.log(f"{path}: {passed_over} line(s) made under another setting (or torn) are run again")
        runs = []
        missing = []
        for spec in todo:
            size = (spec["T"], spec["kv"])
            if run_key(spec) in done:
                runs.append(done[run_key(spec)])
                bar.update(1)
                continue
            if config.report_only:
                missing.append(spec)
                bar.update(1)
                continue
            if size not in sets:
                sets = {size: fixed_sets(config, *size)}  # one size at a time: the plan is size-major
            what = f"{spec['model']} d={spec['d_model']} T={size[0]} kv={size[1]} lr={spec['lr']:g} s={spec['seed']}"
            bar.step(what)
            record = train_run(spec, config, sets[size], device,
                               on_step=lambda step, val: bar.step(f"{what} step {step} val {val:.3f}"))
            append_run(path, record)
            runs.append(record)
            bar.update(1)
            reached = record["steps_to_target"] or "not reached"
            bar.log(f"{what}: test {record['accuracy']:.3f}, {config.target_accuracy} at {reached}")
        rows = aggregate(runs, config, device)
    rows += [{"case": f"{m['model']}/d{m['d_model']}/{'mlp' if m['mlp'] else 'no-mlp'}/T{m['T']}", "model": m["model"],
              "layers": m["layers"], "d_model": m["d_model"], "mlp": m["mlp"], "T": m["T"], "kv": m["kv"],
              "lr": m["lr"], "seed": m["seed"], "status": "not run"} for m in missing]
    for row in rows:
        if row["status"] != "ok":
            continue
        window = _window(row["layers"])
        if window is not None:
            row["window"] = window
            row["ceiling"] = window_ceiling(*fixed_sets(config, row["T"], row["kv"])["test"], row["kv"], window)
    return rows


def _at_chance(acc: float, chance: float, n: int) -> bool:
    """Within 3 binomial standard errors (at least 0.02) of chance."""
    return acc <= chance + max(0.02, 3 * (chance * (1 - chance) / max(n, 1)) ** 0.5)


def aggregate(runs: list[dict], cfg: RecallConfig, device: torch.device) -> list[dict]:
    """One record per (model, width, MLP, size): the best learning rate's seeds summarised."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["d_model"], r["mlp"], r["T"], r["kv"]), []).append(r)
    states: dict[tuple, int | None] = {}
    rows = []
    for (model, d, mlp, T, kv), members in groups.items():
        by_lr: dict[float, list[dict]] = {}
        for r in members:
            by_lr.setdefault(float(r["lr"]), []).append(r)
        score = {lr: statistics.fmean(r["accuracy"] for r in rs) for lr, rs in by_lr.items()}
        best = best_lr(by_lr, score)
        accs = [r["accuracy"] for r in by_lr[best]]
        hit = [r["steps_to_target"] for r in by_lr[best] if r["steps_to_target"] is not None]
        layers = members[0]["layers"]
        if (layers, d, T) not in states:
            states[(layers, d, T)] = state_bytes(build_model(layers, cfg, d, T, True, 0).to(device), T, device)
        n_scored = cfg.test_examples * kv
        rows.append({
            "case": f"{model}/d{d}/{'mlp' if mlp else 'no-mlp'}/T{T}", "model": model, "layers": layers,
            "d_model": d, "mlp": mlp, "T": T, "kv": kv, "best_lr": best, "accuracy": statistics.fmean(accs),
            "accuracy_std": statistics.pstdev(accs), "accuracy_min": min(accs), "accuracy_max": max(accs),
            "seeds": len(accs), "steps_to_target": statistics.fmean(hit) if hit else None,
            "reached": f"{len(hit)}/{len(accs)}", "chance": 1 / kv,
            "at_chance": _at_chance(statistics.fmean(accs), 1 / kv, n_scored),
            "state_bytes": states[(layers, d, T)], "params": members[0]["params"],
            "lr_scores": ", ".join(f"{lr:g}: {s:.3f} ({len(by_lr[lr])} seed{'s' * (len(by_lr[lr]) > 1)})"
                                  for lr, s in sorted(score.items())),
            "train_s": sum(r["train_s"] for r in members), "status": "ok"})
    return rows


def summarize(rows: list[dict], config: RecallConfig | None = None) -> dict:
    """The harness check (attention, d=64, headline size) where it was run, the exclusions and the cut."""
    check = [r for r in rows if r["model"] == "attention" and r["d_model"] == 64 and (r["T"], r["kv"]) == HEADLINE
             and r["status"] == "ok"]
    target = config.target_accuracy if config else 0.99
    return {"excluded": config.excluded() if config else {}, "cut_note": config.cut_note() if config else "",
            "harness_check": None if not check else {
                "accuracy": max(r["accuracy"] for r in check), "target": target,
                "passed": max(r["accuracy"] for r in check) >= target}}


def harness_check(progress: bool = True, **overrides) -> dict:
    """Does attention (d=64) reach the target accuracy at (T, kv) = (128, 8) within the configured budget?

    ``overrides`` are :class:`RecallConfig` fields (``max_steps=...``, ``out=...``); returns the summary's
    ``harness_check`` (``accuracy``, ``target``, ``passed``) and the record it came from.
    """
    cfg = RecallConfig(**overrides, check=True)
    cfg.validate()
    rows = run(cfg, progress=progress)
    return summarize(rows, cfg)["harness_check"] | {"rows": rows}
