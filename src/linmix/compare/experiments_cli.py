"""``linmix experiment run CONFIG...`` and ``linmix experiment summary FOLDER``: the tables under ``results/``.

``run`` runs each comparison config and collects its outputs beside the file
(:func:`linmix.compare.experiments.run_experiment`); ``summary`` rebuilds the overview of a folder of such
tables (:func:`linmix.compare.summary.write_summary`).
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add ``linmix experiment`` with its ``run`` and ``summary`` sub-commands."""
    parser = subparsers.add_parser("experiment", help="run comparison config files into results folders; "
                                                      "summarize them")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    run = actions.add_parser("run", help="run each config (like linmix compare --config) and copy its table, "
                                         "records and curves beside it, with command.txt")
    run.add_argument("configs", nargs="+", metavar="CONFIG", help="compare config files (TOML or JSON)")
    run.add_argument("--force", action="store_true", help="rerun a job whose folder already holds results.md")
    run.add_argument("--samples", action="store_true",
                     help="language models: also write samples.md (temperature 0.8, top-k 40, seed 0)")
    run.add_argument("--data-dir", metavar="DIR", help="data root (default $LINMIX_DATA, then the cache)")
    run.set_defaults(func=cmd_run)
    summary = actions.add_parser("summary", help="write FOLDER/SUMMARY.md from the results.csv of its jobs")
    summary.add_argument("folder", nargs="?", default="results/compare", help="default results/compare")
    summary.set_defaults(func=cmd_summary)


def cmd_run(args: argparse.Namespace) -> int:
    """Run every config in turn; a job that fails is reported and the rest still run (exit 1 if any failed)."""
    from linmix.compare.experiments import argv_command, run_experiment

    failed = []
    for path in args.configs:
        try:
            result = run_experiment(path, force=args.force, samples=args.samples, data_dir=args.data_dir,
                                    command=argv_command())
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            print(f"{path}: failed: {err}")
            failed.append(path)
            continue
        if result["status"] == "skipped":
            print(f"skip {path} (results exist in {result['dest']}; --force reruns)")
        else:
            print(f"{path}: {result['status']} in {result['wall_s']:.0f} s -> {result['dest']}")
    return 1 if failed else 0


def cmd_summary(args: argparse.Namespace) -> int:
    from linmix.compare.summary import write_summary

    print(f"written {write_summary(args.folder)}")
    return 0
