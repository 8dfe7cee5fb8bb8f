"""An experiment is one comparison config file plus one command: ``linmix experiment run FOLDER/config.toml``.

It runs what ``linmix compare TASK --config FOLDER/config.toml`` runs, into the config's ``out`` folder (run
directories, checkpoints, metrics), then copies the table, CSV, per-run records and curves next to the
config file and records the command line and wall time in ``command.txt``; for language models it can also
write ``samples.md``, a short seeded sample from every candidate. So a table under ``results/`` always sits
beside the config that made it, and rerunning one is a single command.

Running is resumable: a folder that already holds ``results.md`` is skipped (``force`` reruns it), a
compare run that finished earlier in ``out`` is collected instead of trained again, and an interrupted one
continues: its finished runs are read back from their records (:mod:`linmix.compare.records`).
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from linmix.config import CompareConfig
from linmix.config_io import read_config_file

#: what is copied from the compare folder to the config's folder (those that exist)
OUTPUTS = ("results.md", "results.csv", "runs.json", "grid_runs.json", "val_curves.png", "loss_vs_time.png")
#: how ``samples.md`` samples every model: nanoGPT's habit, reproducible (seeded) and short
SAMPLING = dict(prompt="\n", max_new_tokens=300, temperature=0.8, top_k=40, seed=0)


def load_experiment(config_path: str | os.PathLike, data_dir: str | None = None) -> CompareConfig:
    """The comparison a config file describes (``data_dir`` overrides ``base.data.data_dir``: machine setup)."""
    config = CompareConfig.from_dict(read_config_file(config_path), str(config_path))
    if data_dir is not None:
        config.base = config.base.with_overrides({"data.data_dir": str(data_dir)})
    return config


def run_experiment(config_path: str | os.PathLike, *, force: bool = False, samples: bool = False,
                   data_dir: str | None = None, command: str | None = None) -> dict[str, Any]:
    """Run the comparison in ``config_path`` and collect its outputs beside the file.

    ``command`` is the line written to ``command.txt`` (the CLI passes its own argv; default: the
    ``linmix experiment run`` line for this file). Returns ``{"status": "skipped" | "collected" | "ran",
    "dest": folder, "out": compare folder, "wall_s": seconds}``.
    """
    from linmix.compare.run import resolve_compare, run_compare

    path = Path(config_path)
    dest = path.parent
    cfg = resolve_compare(load_experiment(path, data_dir))
    out = Path(cfg.out)
    if (dest / "results.md").exists() and not force:
        return {"status": "skipped", "dest": str(dest), "out": str(out), "wall_s": 0.0}
    started = time.perf_counter()
    if (out / "results.md").exists() and not force:
        status = "collected"  # the compare run finished earlier (e.g. before an interrupted copy)
    else:
        if force:
            _clear(out, dest)
        _check_clearable(out, dest)
        run_compare(cfg, resume=True)
        status = "ran"
    for name in OUTPUTS:
        if (out / name).exists():
            shutil.copy2(out / name, dest / name)
    if samples and cfg.task == "lm":
        write_samples(out, dest / "samples.md")
    wall_s = time.perf_counter() - started
    _write_command(dest / "command.txt", command or shlex.join(["linmix", "experiment", "run", str(path)]),
                   out / "results.md", wall_s)
    return {"status": status, "dest": str(dest), "out": str(out), "wall_s": wall_s}


def _check_clearable(out: Path, dest: Path) -> None:
    """Refuse an ``out`` that holds the config or the working directory, so a mistyped ``out`` is never
    cleared (``force``) or filled with run folders."""
    target = out.resolve()
    protected = {dest.resolve(), Path.cwd().resolve()}
    if any(target == p or target in p.parents for p in protected):
        raise ValueError(f"refusing to use {out}: it holds {dest} or the working directory; set another out")


def _clear(out: Path, dest: Path) -> None:
    """Remove a finished compare folder so ``force`` starts afresh (see :func:`_check_clearable`)."""
    if out.exists():
        _check_clearable(out, dest)
        shutil.rmtree(out)


def _write_command(path: Path, command: str, results_md: Path, wall_s: float) -> None:
    """``command.txt``: the command line (with ``OMP_NUM_THREADS`` when set: it changes every timing), the
    compare's own total wall time from its table header, and this job's wall time."""
    threads = os.environ.get("OMP_NUM_THREADS")
    lines = [f"OMP_NUM_THREADS={threads} {command}" if threads else command]
    if results_md.exists():
        lines += [f"# {line[2:]}" for line in results_md.read_text().splitlines()
                  if line.startswith("- total wall time")][:1]
    lines.append(f"# job wall time: {wall_s:.0f} s")
    path.write_text("\n".join(lines) + "\n")


def write_samples(out: str | os.PathLike, path: str | os.PathLike, device: str = "cpu") -> Path:
    """``samples.md``: a :data:`SAMPLING` sample from the first run (random seed 0) of every candidate under ``out``.

    One section per run folder that holds a saved model (``config.json``), named by its candidate folder,
    in folder-name order; the sample is fenced and starts with the prompt.
    """
    from linmix.train.sample import load_lm, sample_text

    s = SAMPLING
    parts = [f"# Samples (temperature {s['temperature']:g}, top-k {s['top_k']}, seed {s['seed']}, "
             "prompt: newline)\n"]
    for run in sorted(Path(out).glob("*/seed0*")):
        if not (run / "config.json").is_file():
            continue
        model, tokenizer = load_lm(run, device)
        text = sample_text(model, tokenizer, s["prompt"], s["max_new_tokens"], s["temperature"], s["top_k"],
                           None, s["seed"])
        parts.append(f"\n## {run.parent.name}\n\n```\n{s['prompt']}{text}\n```\n")
    Path(path).write_text("".join(parts))
    return Path(path)


def argv_command() -> str:
    """This process's command line as ``linmix ...`` (what ``command.txt`` records)."""
    return shlex.join(["linmix", *sys.argv[1:]])
