"""``linmix ablate``: one classification protocol, many single-factor variants, one table of what each factor does.

An ablation config (TOML or JSON) holds a ``base`` training config (task ``classify``), an LR grid ``lrs``
(every variant sweeps all of it; the best is reported), ``seeds``, an ``out`` folder and ``[[variants]]``:
each a ``name``, the ``group`` (factor) it varies, a ``layers`` spec, an ``arch`` (default ``bare``) and
dotted TrainConfig ``overrides`` (``"model.pooling" = "sum"``). Variants in group ``reference`` are what the
others are measured against (the one of the same mixer family). Unlike ``linmix compare`` there is no
parameter matching: width is a factor here, so every variant's parameter count is reported instead.

Every run goes through compare's training path (:func:`~linmix.compare.run.resolve_compare`, its per-run
config and :func:`~linmix.compare.run.run_record`). A run whose ``record.json`` exists is read, not retrained,
and ``runs.json`` is rewritten after every run, so an interrupted job loses at most the run in progress.
"""
from __future__ import annotations

import os
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linmix.compare.candidates import Candidate
from linmix.compare.records import clear_unfinished, finished_record, save_record, without_configs
from linmix.compare.run import _slug, _train_config, machine_line, resolve_compare, run_record
from linmix.config import ARCHS, SECTIONS, CompareConfig, TrainConfig, set_dotted
from linmix.config_io import read_config_file
from linmix.models.pretrained import write_json_atomic
from linmix.models.spec import parse_layer_specs, parse_layers

__all__ = ["AblationConfig", "PlannedRun", "Variant", "dry_run", "load_ablation", "run_ablation",
           "run_ablation_file", "validate"]

#: keys a variant may not override: the ablation itself sets them per run
RESERVED = ("task", "model.layers", "model.arch", "optim.lr", "run.seed", "run.out")
#: what ``linmix ablate --config FILE`` copies beside the config file
OUTPUTS = ("results.md", "results.csv", "runs.json", "ablation.png")
VARIANT_KEYS = ("name", "group", "layers", "arch", "overrides")


@dataclass
class Variant:
    """One row of the table: a layer spec and architecture plus dotted overrides of the base config."""

    name: str
    group: str
    layers: str
    arch: str = "bare"
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def candidate(self) -> Candidate:
        """The compare candidate this variant trains (``summation(normalize=sqrt)@bare``)."""
        return Candidate(self.layers, self.arch)

    @property
    def family(self) -> str:
        """The mixers it uses (``summation``, ``attention``, ``attention+summation``): what deltas pair by."""
        return "+".join(sorted(set(parse_layers(self.layers))))


@dataclass
class AblationConfig:
    """An ablation: the base protocol, the LR grid and seeds every variant gets, the variants, the out folder."""

    base: TrainConfig
    variants: list[Variant]
    lrs: list[float] = field(default_factory=list)
    seeds: int = 1
    out: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the ablation config") -> AblationConfig:
        """Read the file's table; unknown keys anywhere are a one-line ``ValueError`` naming the key."""
        data = dict(data)
        unknown = sorted(set(data) - {"base", "variants", "lrs", "seeds", "out"})
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} in {source}; known: base, lrs, out, seeds, variants")
        base = TrainConfig.from_dict(data.get("base") or {}, f"{source} [base]")
        variants = [_variant(v, i, source) for i, v in enumerate(data.get("variants") or [])]
        return cls(base, variants, list(data.get("lrs") or []), data.get("seeds", 1), data.get("out"))


@dataclass
class PlannedRun:
    """One training run of the grid: its variant, LR, seed, folder and resolved configs."""

    variant: Variant
    lr: float
    seed: int
    run_dir: Path
    config: TrainConfig
    compare: CompareConfig


def _variant(data: Any, index: int, source: str) -> Variant:
    """A ``[[variants]]`` table as a :class:`Variant` (``ValueError`` naming it and the bad key)."""
    label = f"variant {data.get('name', index + 1)!r}" if isinstance(data, dict) else f"variant {index + 1}"
    if not isinstance(data, dict):
        raise ValueError(f"{label} in {source} must be a table with name, group and layers")
    unknown = sorted(set(data) - set(VARIANT_KEYS))
    if unknown:
        raise ValueError(f"{label}: unknown key {unknown[0]!r}; a variant has: {', '.join(VARIANT_KEYS)}")
    for key in ("name", "group", "layers"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise ValueError(f"{label}: {key!r} must be a non-empty string")
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ValueError(f"{label}: overrides must be a table of dotted keys, e.g. \"model.pooling\" = \"sum\"")
    return Variant(data["name"].strip(), data["group"].strip(), data["layers"].strip(),
                   data.get("arch", "bare"), _flatten(overrides))


def _flatten(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"model": {"pooling": "sum"}}`` (TOML's reading of an unquoted ``model.pooling``) as
    ``{"model.pooling": "sum"}``; quoted dotted keys pass through."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    return flat


def load_ablation(path: str | os.PathLike, data_dir: str | None = None, out: str | None = None) -> AblationConfig:
    """The ablation a config file describes; ``data_dir`` and ``out`` override the file (machine setup)."""
    cfg = AblationConfig.from_dict(read_config_file(path), str(path))
    if data_dir is not None:
        cfg.base = cfg.base.with_overrides({"data.data_dir": str(data_dir)})
    if out is not None:
        cfg.out = str(out)
    return cfg


def validate(cfg: AblationConfig) -> list[PlannedRun]:
    """Check everything and plan every variant x LR x seed run; needs no data, trains nothing.

    ``ValueError`` (one line, naming the variant and key) for a bad grid, duplicate names, an unknown or
    reserved override key, a bad layer spec or architecture, an unknown dataset or any value the training
    config rejects.
    """
    if cfg.base.task != "classify":
        raise ValueError(f"base.task must be 'classify' (ablations compare classifiers), got {cfg.base.task!r}")
    if not cfg.lrs or not all(isinstance(lr, (int, float)) and lr > 0 for lr in cfg.lrs):
        raise ValueError(f"lrs must be a non-empty list of positive learning rates, got {cfg.lrs!r}")
    if not isinstance(cfg.seeds, int) or cfg.seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {cfg.seeds!r}")
    if not cfg.variants:
        raise ValueError("an ablation needs at least one [[variants]] table")
    _check_names(cfg.variants)
    out = Path(cfg.out or f"runs/ablate-{cfg.base.data.dataset}")
    return [run for v in cfg.variants for run in _plan_variant(cfg, v, out)]


def _check_names(variants: list[Variant]) -> None:
    """Names must differ, and so must the folders they become (``a b`` and ``a-b`` would share one)."""
    seen: dict[str, str] = {}
    for v in variants:
        if v.name in seen.values():
            raise ValueError(f"duplicate variant name {v.name!r}; every variant needs its own name")
        slug = _slug(v.name)
        if not slug or slug in seen:
            other = seen.get(slug, v.name)
            raise ValueError(f"variant {v.name!r}: its run folder {slug!r} is also {other!r}'s; rename one")
        seen[slug] = v.name


def _plan_variant(cfg: AblationConfig, v: Variant, out: Path) -> list[PlannedRun]:
    """The runs of one variant, resolved the way ``linmix compare`` resolves a single-candidate comparison."""
    label = f"variant {v.name!r}"
    compare = CompareConfig(base=_variant_base(cfg.base, v), candidates=[_candidate_name(v)], seeds=cfg.seeds,
                            lrs=list(cfg.lrs), match_params=False, out=str(out))
    try:
        compare = resolve_compare(compare)
        runs = []
        for seed in range(cfg.seeds):
            for lr in cfg.lrs:
                run_dir = out / _slug(v.name) / f"seed{seed}-lr{lr:g}"
                config = _train_config(compare, v.candidate, compare.base.model.d_model, seed, lr, run_dir)
                runs.append(PlannedRun(v, float(lr), seed, run_dir, config, compare))
    except ValueError as err:
        raise ValueError(f"{label}: {_first_line(err)}") from None
    return runs


def _variant_base(base: TrainConfig, v: Variant) -> TrainConfig:
    """The base config with the variant's overrides applied; each key checked on its own so the error names it."""
    from linmix.data.sources import dataset_spec

    values = base.to_dict()
    for key, value in v.overrides.items():
        try:
            if key in RESERVED:
                raise ValueError("the ablation sets it per run (layers, arch, the LR grid, seeds, run folders)")
            set_dotted(values, key, value)
            if key == "data.dataset":
                dataset_spec(value)
        except ValueError as err:
            raise ValueError(f"variant {v.name!r}: override {key!r}: {_first_line(err)}") from None
    return TrainConfig.from_dict(values)


def _candidate_name(v: Variant) -> str:
    """The variant as compare's candidate text, its layer spec and arch checked (error names the variant)."""
    try:
        if v.arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {v.arch!r}")
        parse_layer_specs(v.layers)
        return Candidate.parse(v.candidate.name).name
    except ValueError as err:
        raise ValueError(f"variant {v.name!r}: layers {v.layers!r}: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


# ------------------------------------------------------------------------------------------- running
def run_ablation(cfg: AblationConfig, *, force: bool = False, report_only: bool = False,
                 progress: bool = True) -> dict[str, Any]:
    """Train every planned run that has no record yet (``force``: all of them) and write the report.

    ``report_only`` trains nothing and reports the records that exist. Returns ``{"rows", "records",
    "markdown", "out"}``.
    """
    from tqdm import tqdm

    from linmix.compare.ablation_report import write_report

    plan = validate(cfg)
    out = Path(plan[0].compare.out)
    if not report_only:
        _check_data(plan)
    records: list[dict[str, Any]] = []
    bar = tqdm(total=len(plan), unit="run", desc="ablate", disable=not progress or report_only,
               dynamic_ncols=True)
    for run in plan:
        bar.set_postfix_str(f"{run.variant.name} lr {run.lr:g} seed {run.seed}")
        record = None if force else finished_record(run.run_dir, run.config, repr(run.variant.name))
        if record is None and not report_only:
            record = _train_one(run)
            records.append(record)
            write_json_atomic(out / "runs.json", without_configs(records))
        elif record is not None:
            records.append(record)
        bar.update(1)
    bar.close()
    if not records:
        raise ValueError(f"no finished runs in {out}; run without --report-only first")
    rows, markdown = write_report(out, cfg, records, planned=len(plan))
    return {"rows": rows, "records": records, "markdown": markdown, "out": str(out)}


def _check_data(plan: list[PlannedRun]) -> None:
    """Find every dataset's files before the first run, so a missing one fails now, not hours in."""
    from linmix.data.sources import resolve_dataset

    for dataset, data_dir in dict.fromkeys((r.config.data.dataset, r.config.data.data_dir) for r in plan):
        resolve_dataset(dataset, data_dir)


def _train_one(run: PlannedRun) -> dict[str, Any]:
    """Train one run (a leftover unfinished folder is cleared first) and write its record."""
    from linmix.train import run_training

    clear_unfinished(run.run_dir)
    summary = run_training(run.config)
    v = run.variant
    record = run_record(run.compare, v.name, run.seed, run.config.model.d_model, run.run_dir, summary)
    record.update(variant=v.name, group=v.group, layers=v.layers, arch=v.arch, family=v.family,
                  candidate_name=v.candidate.name, overrides=v.overrides, dataset=run.config.data.dataset,
                  machine=machine_line(summary.get("machine") or {}))
    return save_record(run.run_dir, record, run.config)


def run_ablation_file(path: str | os.PathLike, *, out: str | None = None, data_dir: str | None = None,
                      force: bool = False, report_only: bool = False, command: str | None = None,
                      progress: bool = True) -> dict[str, Any]:
    """Run the ablation in ``path`` and copy its outputs beside the file, with ``command.txt`` (the command
    line and wall time), as ``linmix experiment run`` does for comparisons."""
    from linmix.compare.experiments import _write_command

    path = Path(path)
    started = time.perf_counter()
    result = run_ablation(load_ablation(path, data_dir, out), force=force, report_only=report_only,
                          progress=progress)
    src, dest = Path(result["out"]), path.parent
    for name in OUTPUTS:
        if (src / name).exists() and (src / name).resolve() != (dest / name).resolve():
            shutil.copy2(src / name, dest / name)
    wall_s = time.perf_counter() - started
    if not (report_only and (dest / "command.txt").exists()):  # keep the command that trained the runs
        _write_command(dest / "command.txt", command or shlex.join(["linmix", "ablate", "--config", str(path)]),
                       src / "results.md", wall_s)
    return {**result, "dest": str(dest), "wall_s": wall_s}


def dry_run(path: str | os.PathLike) -> list[PlannedRun]:
    """Every run a config file plans, validated without data or training (what the committed configs' test uses)."""
    return validate(load_ablation(path))
