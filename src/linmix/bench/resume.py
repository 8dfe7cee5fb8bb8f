"""Resume files of the long benchmarks: one JSON object a line, appended and flushed as each unit of work ends.

A rerun reads the file back and skips what is there; a torn last line (the process was killed while writing)
is passed over, so that unit runs again. Nothing here knows what a record holds.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def append_record(path: Path | None, record: dict) -> None:
    """Append ``record`` to ``path`` as one line and flush it to disk at once (``None``: nothing written)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_records(path: Path | None) -> tuple[list[dict], int]:
    """The records of ``path`` and how many lines could not be read (none when the file is missing)."""
    if path is None or not path.exists():
        return [], 0
    records, torn = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            torn += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            torn += 1
    return records, torn
