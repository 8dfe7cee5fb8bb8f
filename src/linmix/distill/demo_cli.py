"""``linmix distill-demo --config FILE``: train an attention LM, convert and distil it into every candidate
mixer, and compare each with the same architecture trained from scratch (:func:`linmix.distill.demo.run_demo`).

Only parses arguments; a bad config (an unknown key or mixer, a bad ``keep``, a missing file) or a
folder holding other settings is a ``ValueError``/``FileNotFoundError`` that :mod:`linmix.cli` prints as
one line with exit code 2.
"""
from __future__ import annotations

import argparse
import shlex
from typing import Any

from linmix.train.cli import _one_line_errors

EPILOG = """example:
  OMP_NUM_THREADS=1 linmix distill-demo --config results/convert/nanogpt-64/config.toml \\
      --out runs/convert-nanogpt-64
running the same command again resumes an interrupted demo; finished stages are read, not retrained.
"""


def add_run_flags(p: argparse.ArgumentParser, command: str) -> None:
    """The flags every one-config distillation command takes: the config, where to write, the data root,
    whether to copy the results beside the config, progress bars."""
    p.add_argument("--config", required=True, metavar="FILE", help="the run's TOML or JSON config")
    p.add_argument("--out", default=None, metavar="OUT",
                   help=f"output folder (default: the config's out, else runs/{command}-<config folder>)")
    p.add_argument("--data-dir", default=None, metavar="D", help="data root (default $LINMIX_DATA, then the cache)")
    p.add_argument("--no-copy", action="store_true", help="leave the results in --out only")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the stage lines remain)")


def register(subparsers: Any) -> None:
    """Add ``linmix distill-demo`` to the ``linmix`` parser."""
    p = subparsers.add_parser(
        "distill-demo", help="train an attention LM, distil it into other mixers, compare with training from scratch",
        description="Train the [teacher] LM of the config, convert it to every candidate mixer (all or all but "
                    "the kept attention layers), run attention transfer and recovery, train each converted "
                    "architecture from scratch for teacher + transfer + recovery steps, and write results.md, "
                    "results.csv, results.json and results.png to --out; they are also copied beside the config "
                    "with command.txt (--no-copy: not).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _one_line_errors(p)
    add_run_flags(p, "distill-demo")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: the config's)")
    p.set_defaults(func=cmd_distill_demo)


def cmd_distill_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from linmix.distill.demo import default_out, run_demo
    from linmix.distill.demo_config import load_demo_config

    config = load_demo_config(args.config)
    out = args.out or config.out or default_out(args.config)
    command = shlex.join(["linmix", "distill-demo", "--config", args.config, "--out", str(out)])
    results = run_demo(config, out, data_dir=args.data_dir, device=args.device, progress=not args.quiet,
                       copy_to=None if args.no_copy else Path(args.config).parent, command=command)
    for row in results["rows"]:
        print(f"{row['layers']:<32} swap {row['swap']:.4f}  transfer {row['transfer']:.4f}  recovery "
              f"{row['recovery']:.4f}  scratch {row['scratch'] or float('nan'):.4f} ({row['scratch_steps']} steps)")
    return 0
