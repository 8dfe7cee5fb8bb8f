"""One tree of dataclasses for everything linmix builds or runs.

``ModelConfig`` is what a model is (its config.json). ``TrainConfig`` = ``task`` + ``model`` + ``data`` +
``optim`` + ``run`` sections is a training run (its train_config.json). ``CompareConfig`` = a base
``TrainConfig`` + candidates, seeds, LR grid and budget is a comparison. A field whose default depends on the
task is ``None`` here and resolves from :mod:`linmix.defaults`; every other default is its field's own, so
each default lives in one place. The command line only maps flags onto these fields (:mod:`linmix.config_io`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from linmix.checks import check_choice as _choice, check_int_at_least, check_range
from linmix.checks import check_positive as _positive, is_finite as _finite
from linmix.defaults import (COMPARE_DEFAULTS, MODEL_DEFAULTS, RESUME_MUTABLE, TASK_DEFAULTS, fill_bare_options,
                             fill_derived)

__all__ = ["COMPARE_DEFAULTS", "MODEL_DEFAULTS", "RESUME_MUTABLE", "TASK_DEFAULTS", "CompareConfig", "DataConfig",
           "ModelConfig", "OptimConfig", "RunConfig", "TrainConfig", "compare_config", "train_config"]

TASKS = ("lm", "classify", "multimodal")
SCHEDULES = ("cosine", "constant")
AMP_MODES = ("none", "bf16", "fp16")
CONTROLLERS = ("none", "qlearning")
DTYPES = ("float32", "float64")
TOKENIZERS = ("char", "word", "bpe")
POSITIONAL = ("learned", "multiplicative", "none", "rotary", "sinusoidal")
NORMS = ("pre", "post")
ARCHS = ("block", "bare")
POOLINGS = ("mean", "sum", "cls")
FUSIONS = ("add", "concat", "text")


def _help(text: str, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Field metadata the command line reads: the flag's help text and, for a closed set, its choices."""
    return {"help": text, "choices": choices}


# ------------------------------------------------------------------------------------------- sections
@dataclass
class ModelConfig:
    """What a model is: every linmix model is built from one and saves it as ``config.json``.

    ``head`` picks the model (``lm``: :class:`~linmix.LanguageModel`, ``classify``: :class:`~linmix.Classifier`,
    ``multimodal``: :class:`~linmix.MultimodalRegressor`). ``vocab_size``, ``num_classes`` and ``n_numeric``
    come from the data when training builds the model. ``mixer_options`` maps a mixer name to options for
    every layer of that mixer; options written inline in ``layers`` (``"local_attention(window=64)"``) win.
    """

    head: str = "lm"
    layers: str | None = field(default=None, metadata=_help("layer spec, e.g. 'summation*3,local_attention(window=64)'"))
    d_model: int | None = field(default=None, metadata=_help("model width"))
    n_heads: int = field(default=4, metadata=_help("heads of head-based mixers"))
    max_len: int | None = field(default=None, metadata=_help("LM block size / longest text in tokens"))
    positional: str = field(default="learned", metadata=_help("learned/multiplicative: a [max_len, D] table; "
                            "sinusoidal: fixed, any length; rotary: rotary=true in the mixers; none", POSITIONAL))
    norm: str = field(default="pre", metadata=_help("LayerNorm placement", NORMS))
    ffn_mult: int = field(default=4, metadata=_help("feed-forward width multiplier (0 = no feed-forward)"))
    dropout: float = field(default=0.0, metadata=_help("dropout"))
    arch: str = field(default="block", metadata=_help(
        "block: residual blocks; bare: embedding -> mixers -> pool (the summation papers' classifier)", ARCHS))
    pooling: str = field(default="mean", metadata=_help("sequence pooling", POOLINGS))
    fusion: str = field(default="add", metadata=_help("add/concat text and numeric; text: text only", FUSIONS))
    tie_weights: bool = True
    causal: bool = False
    vocab_size: int | None = None
    num_classes: int | None = None
    n_numeric: int | None = None
    mixer_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resolved(self) -> ModelConfig:
        """A copy with the head's defaults filled in, checked (``ValueError`` names the bad field)."""
        _choice("model.head", self.head, TASKS)
        values = dataclasses.asdict(self)
        for key, value in MODEL_DEFAULTS[self.head].items():
            if values[key] is None:
                values[key] = value
        values["causal"] = values["causal"] or self.head == "lm"  # a language model is causal
        if values["arch"] == "bare":  # the summation papers' design: their raw sum unless a spec says otherwise
            values["mixer_options"] = fill_bare_options(values["layers"], values["mixer_options"])
        cfg = ModelConfig(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """``ValueError`` naming the first nonsensical value (the config must be resolved)."""
        _positive(d_model=self.d_model, n_heads=self.n_heads, max_len=self.max_len, vocab_size=self.vocab_size)
        check_int_at_least("ffn_mult", self.ffn_mult, 0)
        check_range("dropout", self.dropout, 0, 1, high_open=True)
        for name, allowed in (("positional", POSITIONAL), ("norm", NORMS), ("arch", ARCHS),
                              ("pooling", POOLINGS), ("fusion", FUSIONS)):
            _choice(name, getattr(self, name), allowed)
        if not isinstance(self.mixer_options, dict) or not all(
                isinstance(v, dict) for v in self.mixer_options.values()):
            raise ValueError("mixer_options must map mixer names to option dicts, e.g. "
                             "{'local_attention': {'window': 64}}")
        from linmix.models.spec import parse_layer_specs

        for spec in parse_layer_specs(self.layers):  # unknown names or options -> ValueError
            spec.check(self.mixer_options.get(spec.name, {}))


@dataclass
class DataConfig:
    """Where the examples come from and how they become batches (``drop_features``: multimodal inputs left out)."""

    dataset: str | None = field(default=None, metadata=_help("dataset name"))
    tokenizer: str | None = field(default=None, metadata=_help("tokenizer", TOKENIZERS))
    vocab_size: int | None = field(default=None, metadata=_help("vocabulary size of word / bpe tokenizers"))
    batch_size: int | None = field(default=None, metadata=_help("per-process batch; global = batch x processes"))
    target: str = field(default="Rating", metadata=_help("regression target column (multimodal)"))
    data_dir: str | None = field(default=None, metadata=_help("data root (default $LINMIX_DATA, then the cache)"))
    valid_fraction: float | None = field(default=None, metadata=_help(
        "multimodal: validate on this seeded fraction of train instead of the test split (which stays held out)"))
    drop_features: list[str] = field(default_factory=list)

    def validate(self) -> None:
        _positive(vocab_size=self.vocab_size, batch_size=self.batch_size)
        _choice("tokenizer", self.tokenizer, TOKENIZERS)


@dataclass
class OptimConfig:
    """AdamW, its LR schedule, clipping and the optional LR controller."""

    lr: float | None = field(default=None, metadata=_help("peak learning rate"))
    min_lr_ratio: float = field(default=0.1, metadata=_help("cosine floor as a fraction of lr"))
    warmup: int | None = field(default=None, metadata=_help("linear warmup steps"))
    schedule: str | None = field(default=None, metadata=_help(
        "LR schedule after warmup (default cosine; constant under an lr_controller, which anneals)", SCHEDULES))
    weight_decay: float = field(default=0.1, metadata=_help("AdamW weight decay on matrices"))
    beta1: float = field(default=0.9, metadata=_help("AdamW beta1"))
    beta2: float = field(default=0.95, metadata=_help("AdamW beta2 (nanoGPT's char Shakespeare uses 0.99)"))
    grad_clip: float = field(default=1.0, metadata=_help("clip the global gradient norm (0 = off)"))
    lr_controller: str = field(default="none", metadata=_help(
        "'qlearning': a tabular Q-learner rescales the LR every 10 steps after warmup (linmix.train.qlearning)",
        CONTROLLERS))
    controller_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not (_finite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        check_int_at_least("warmup", self.warmup, 0)
        check_range("min_lr_ratio", self.min_lr_ratio, 0, 1)
        check_range("weight_decay", self.weight_decay, 0)
        for name in ("beta1", "beta2"):
            check_range(name, getattr(self, name), 0, 1, high_open=True)
        check_range("grad_clip", self.grad_clip, 0, note="0 = off")
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("lr_controller", self.lr_controller, CONTROLLERS)


@dataclass
class RunConfig:
    """How long to train, how often to evaluate and checkpoint, and where."""

    steps: int | None = field(default=None, metadata=_help("optimizer steps"))
    epochs: float | None = field(default=None, metadata=_help("passes over the training data (instead of steps)"))
    eval_every: int | None = field(default=None, metadata=_help("evaluate every N steps"))
    eval_batches: int | None = field(default=None, metadata=_help("validation batches per periodic evaluation"))
    final_eval_batches: int | None = field(default=None, metadata=_help(
        "bound the final evaluation to N batches (default: the whole validation split)"))
    checkpoint_every: int | None = field(default=None, metadata=_help("checkpoint every N steps (default: eval_every)"))
    log_every: int = field(default=10, metadata=_help("log the training loss every N steps"))
    patience: int | None = field(default=None, metadata=_help(
        "early stopping after N evaluations without improvement (0 = off)"))
    seed: int = field(default=0, metadata=_help("seed of initialisation, data order and sampling"))
    amp: str = field(default="none", metadata=_help("autocast: bf16 (CPU/CUDA) or fp16 + GradScaler (CUDA)", AMP_MODES))
    dtype: str = field(default="float32", metadata=_help("parameter dtype", DTYPES))
    device: str = field(default="auto", metadata=_help("auto (CUDA if available), cpu, cuda or cuda:N"))
    out: str | None = field(default=None, metadata=_help("run directory (default runs/<task>-<dataset>-<time>)"))
    progress: bool = True

    def validate(self) -> None:
        _positive(eval_every=self.eval_every, checkpoint_every=self.checkpoint_every, log_every=self.log_every,
                  eval_batches=self.eval_batches, final_eval_batches=self.final_eval_batches, steps=self.steps)
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give either steps or epochs, not both")
        if self.epochs is not None and not (_finite(self.epochs) and self.epochs > 0):
            raise ValueError(f"epochs must be a positive number, got {self.epochs!r}")
        check_int_at_least("patience", self.patience, 0, "0 = no early stopping")
        check_int_at_least("seed", self.seed, 0)
        _choice("amp", self.amp, AMP_MODES)
        _choice("dtype", self.dtype, DTYPES)
        if self.amp != "none" and self.dtype != "float32":
            raise ValueError("amp needs dtype float32 (autocast lowers float32 operations)")


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "run": RunConfig}


@dataclass
class TrainConfig:
    """Everything that defines a training run: ``task`` plus the model, data, optim and run sections.

    ``run.steps`` and ``run.epochs`` are alternatives (epochs become steps once the data is loaded).
    :meth:`resolved` fills the task's defaults (:data:`TASK_DEFAULTS`) and checks every value.
    """

    task: str = "lm"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def resolved(self) -> TrainConfig:
        """A copy with the task defaults filled in and every value checked (``ValueError`` otherwise)."""
        _choice("task", self.task, TASKS)
        values = self.to_dict()
        values["model"]["head"] = self.task
        explicit_length = values["run"]["steps"] is not None or values["run"]["epochs"] is not None
        for section, defaults in TASK_DEFAULTS[self.task].items():
            for key, value in defaults.items():
                if key in ("steps", "epochs") and explicit_length:
                    continue
                if values[section][key] is None:
                    values[section][key] = value
        cfg = TrainConfig.from_dict(values)
        cfg.model = cfg.model.resolved()
        fill_derived(cfg)
        for section in (cfg.data, cfg.optim, cfg.run):
            section.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able nested dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the training config") -> TrainConfig:
        """Inverse of :meth:`to_dict`; a missing section is its defaults, an unknown key is a ``ValueError``
        naming the key and ``source``."""
        if not isinstance(data, dict):
            raise ValueError(f"{source} must be a table of sections, got {type(data).__name__}")
        unknown = sorted(set(data) - {"task", *SECTIONS})
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} in {source}; sections are: task, {', '.join(SECTIONS)}")
        sections = {name: section_from_dict(kind, data.get(name) or {}, f"{source} [{name}]")
                    for name, kind in SECTIONS.items()}
        return cls(task=data.get("task", "lm"), **sections)

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """A copy with ``{"optim.lr": 3e-3, "model.layers": ...}`` applied (``ValueError`` on unknown keys)."""
        values = self.to_dict()
        for key, value in overrides.items():
            set_dotted(values, key, value)
        return TrainConfig.from_dict(values)

    @property
    def name(self) -> str:
        """``lm tinyshakespeare [summation*3,attention]``: what plots and logs call the run."""
        return f"{self.task} {self.data.dataset} [{self.model.layers}]"


@dataclass
class CompareConfig:
    """A comparison: one base :class:`TrainConfig` and the candidates trained under its budget.

    Candidates are written as :meth:`linmix.compare.candidates.Candidate.parse` reads (``"summation@bare"``,
    ``"summation+add"``, ``"ridge"``). Every candidate gets the base's data, tokenizer, steps, batch and
    seeds (``None``: the task's default); ``match_params`` sizes each one's ``d_model`` so its parameter count
    lies within 10% of the baseline's. ``lrs`` is an LR grid every candidate sweeps (the best of each is
    reported); ``time_budget_s`` gives every candidate the same training time instead of the same steps.
    """

    base: TrainConfig = field(default_factory=TrainConfig)
    candidates: list[str] = field(default_factory=list)
    baseline: str | None = None
    seeds: int | None = None
    lrs: list[float] = field(default_factory=list)
    time_budget_s: float | None = None
    probe_steps: int = 12
    match_params: bool = True
    out: str | None = None

    @property
    def task(self) -> str:
        return self.base.task

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the compare config") -> CompareConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a ``ValueError`` naming the key and ``source``."""
        data = dict(data)
        base = TrainConfig.from_dict(data.pop("base", {}) or {}, f"{source} [base]")
        return section_from_dict(cls, dict(data, base=base), source)


def compare_config(task: str = "lm", **fields: Any) -> CompareConfig:
    """``compare_config("lm", candidates=[...], seeds=3, steps=400, lr=...)``: a :class:`CompareConfig`
    from its own fields plus bare training field names for its base (see :func:`train_config`)."""
    own = {f.name for f in dataclasses.fields(CompareConfig)} - {"base"}
    mine = {k: v for k, v in fields.items() if k in own}
    base = train_config(task, **{k: v for k, v in fields.items() if k not in own})
    return CompareConfig(base=base, **mine)


# ------------------------------------------------------------------------------------------- helpers
def section_from_dict(kind: type, data: dict[str, Any], source: str) -> Any:
    """Build a section dataclass from a dict; an unknown key is a ``ValueError`` naming it and ``source``."""
    if not isinstance(data, dict):
        raise ValueError(f"{source} must be a table, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in {source}; known keys: {', '.join(names)}")
    return kind(**data)


def set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    """Set ``values["optim"]["lr"]`` for ``key = "optim.lr"``; unknown sections or fields are a ``ValueError``."""
    section, _, name = key.partition(".")
    if section == "task" and not name:
        values["task"] = value
        return
    if section not in SECTIONS or not name:
        raise ValueError(f"unknown config key {key!r}; write SECTION.FIELD with SECTION one of "
                         f"{', '.join(SECTIONS)} (e.g. optim.lr)")
    fields = [f.name for f in dataclasses.fields(SECTIONS[section])]
    if name not in fields:
        raise ValueError(f"unknown config key {key!r}; [{section}] has: {', '.join(fields)}")
    values[section][name] = value


def field_index() -> dict[str, str]:
    """``{"lr": "optim.lr", ...}``: every section field by its bare name. The one shared name,
    ``vocab_size``, means the tokenizer's (``data.vocab_size``); the model's comes from the tokenizer."""
    index: dict[str, str] = {}
    for section in ("data", "optim", "run", "model"):
        for f in dataclasses.fields(SECTIONS[section]):
            index.setdefault(f.name, f"{section}.{f.name}")
    return index


def train_config(task: str = "lm", **fields: Any) -> TrainConfig:
    """``train_config("lm", layers="attention*4", lr=1e-3, steps=500)``: a :class:`TrainConfig` from bare
    field names (``lr`` -> ``optim.lr``) or dotted ones passed as a dict (``**{"optim.lr": 1e-3}``)."""
    index = field_index()
    overrides = {}
    for key, value in fields.items():
        dotted = key if "." in key else index.get(key)
        if dotted is None:
            raise ValueError(f"unknown training option {key!r}; known: {', '.join(sorted(index))}")
        overrides[dotted] = value
    return TrainConfig(task=task).with_overrides(overrides)
