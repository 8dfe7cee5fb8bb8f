"""``linmix ablate --config FILE``: run a classification ablation and copy its report beside the file.

See :mod:`linmix.compare.ablation` for the config (a base protocol, an LR grid, seeds, ``[[variants]]``).
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add ``linmix ablate``."""
    parser = subparsers.add_parser("ablate", help="train single-factor variants of a classifier under one "
                                                  "protocol; one table grouped by factor")
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="ablation config (TOML or JSON): base, lrs, seeds, out and [[variants]]")
    parser.add_argument("--out", metavar="DIR", help="run folder (default: the config's out)")
    parser.add_argument("--data-dir", metavar="DIR", help="data root (default $LINMIX_DATA, then the cache)")
    parser.add_argument("--force", action="store_true", help="retrain runs that already have a record")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: rebuild the table and plot from the finished runs")
    parser.set_defaults(func=cmd_ablate)


def cmd_ablate(args: argparse.Namespace) -> int:
    """Run (or resume) the ablation; print the table and where it went."""
    from linmix.compare.ablation import run_ablation_file
    from linmix.compare.experiments import argv_command

    result = run_ablation_file(args.config, out=args.out, data_dir=args.data_dir, force=args.force,
                               report_only=args.report_only, command=argv_command())
    print(result["markdown"])
    print(f"written to {result['out']}/ and {result['dest']}/ (results.md, results.csv, runs.json, "
          f"ablation.png, command.txt) in {result['wall_s']:.0f} s")
    return 0
