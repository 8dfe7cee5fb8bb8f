"""Write ``grid_runs.json`` and the LR-grid table for a finished ``linmix compare`` run from its run folders.

    python results/compare/rebuild_grid.py runs/tables/JOB results/compare/JOB

``linmix compare`` writes both itself when given several ``--lr``; this rebuilds them (with the same code) for
a compare run made before it did, from each run folder's ``summary.json`` and ``metrics.jsonl``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from linmix.compare.run import METRICS, CompareConfig, run_slug, run_record
from linmix.compare.table import write_grid


def main(run_root: str, dest: str) -> int:
    root, out = Path(run_root), Path(dest)
    chosen = json.loads((out / "runs.json").read_text())
    cfg = CompareConfig(task="classify" if "val_acc" in chosen[0] else "lm")
    records = []
    for cand in dict.fromkeys(r["candidate"] for r in chosen):
        d_model = next(r["d_model"] for r in chosen if r["candidate"] == cand)
        for run_dir in sorted((root / run_slug(cand)).glob("seed*")):
            summary = json.loads((run_dir / "summary.json").read_text())
            records.append(run_record(cfg, cand, summary["seed"], d_model, run_dir, summary))
    write_grid(out, records, METRICS[cfg.task][1])
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
