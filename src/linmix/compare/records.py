"""A finished run's table record on disk, so comparisons and ablations resume where they stopped.

Each training run of ``linmix compare`` and ``linmix ablate`` writes ``RUN_DIR/record.json`` when it has
finished: its table record plus the training config it ran under (without the fields that cannot change the
result, :data:`~linmix.config.RESUME_MUTABLE`). A rerun reads such a record instead of training again; a
record made under another config is an error, so a changed protocol never mixes with old numbers, and a run
folder without a record (interrupted) is cleared and trained from the start.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from linmix.config import RESUME_MUTABLE, TrainConfig
from linmix.models.pretrained import write_json_atomic

#: the file that marks a finished run (its table record)
RECORD = "record.json"


def comparable(config: TrainConfig) -> dict[str, Any]:
    """A run's config as JSON, without the fields that do not change its result (device, data folder...)."""
    values = json.loads(json.dumps(config.to_dict()))
    for key in RESUME_MUTABLE:
        section, name = key.split(".")
        values[section].pop(name, None)
    return values


def finished_record(run_dir: Path, config: TrainConfig, what: str) -> dict[str, Any] | None:
    """The record of the finished run in ``run_dir`` (``None`` if it has none); ``ValueError`` naming ``what``
    (the run, for the message) when it finished under a different config."""
    path = run_dir / RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("train_config") != comparable(config):
        raise ValueError(f"{run_dir} finished under a different config than {what} has now; "
                         "rerun with --force or choose another --out")
    return record


def clear_unfinished(run_dir: Path) -> None:
    """Remove a run folder left by an interrupted run, so the run starts from scratch."""
    if run_dir.exists():
        shutil.rmtree(run_dir)


def save_record(run_dir: Path, record: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """Write ``record`` with its ``train_config`` as ``run_dir/record.json`` (atomically); returns it."""
    record = dict(record, train_config=comparable(config))
    write_json_atomic(run_dir / RECORD, record)
    return record


def without_configs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records as ``runs.json`` holds them: without the full training config each ``record.json`` keeps."""
    return [{k: v for k, v in r.items() if k != "train_config"} for r in records]
