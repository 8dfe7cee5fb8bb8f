"""``linmix analyze``: representation geometry of trained models, as figures with their numbers.

Parses arguments and calls :func:`linmix.analyze.report.analyze`; bad input (a missing checkpoint, data
that cannot be found) is a ``ValueError``/``FileNotFoundError`` that :mod:`linmix.cli` prints as one line.
"""
from __future__ import annotations

import argparse
import shlex
import time
from typing import Any

from linmix.train.cli import _one_line_errors

EPILOG = """examples:
  linmix analyze --checkpoint runs/attn --out runs/analysis-attn
  linmix analyze --checkpoint runs/attn --compare runs/sum runs/agg --out runs/analysis --tokens 4096
"""


def register(subparsers: Any) -> None:
    """Add ``linmix analyze`` to the ``linmix`` parser."""
    p = subparsers.add_parser(
        "analyze", help="plot how token representations evolve through a trained model's layers",
        description="PCA trajectories, pairwise cosine similarity, participation ratio and layer-to-layer "
                    "linear CKA of the hidden states of trained models on their own validation text; each "
                    "figure is a PNG with a JSON of its numbers, plus summary.json and README.md.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _one_line_errors(p)
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory or checkpoint folder")
    p.add_argument("--compare", nargs="+", action="extend", default=[], metavar="DIR",
                   help="more run directories or checkpoint folders, drawn beside the first")
    p.add_argument("--out", default=None, metavar="OUT", help="output folder (default runs/analyze-<time>)")
    p.add_argument("--tokens", type=int, default=2048, metavar="N",
                   help="validation tokens sampled per model, at most (default 2048)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the token sample and pairs")
    p.add_argument("--data-dir", default=None, metavar="D",
                   help="data root holding the runs' datasets (default: the run's own, $LINMIX_DATA, cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_analyze)


def command_line(args: argparse.Namespace, out: str) -> str:
    """The command that reproduces this analysis, for the output's README."""
    parts = ["linmix", "analyze", "--checkpoint", args.checkpoint]
    if args.compare:
        parts += ["--compare", *args.compare]
    parts += ["--out", out, "--tokens", str(args.tokens), "--seed", str(args.seed)]
    if args.data_dir:
        parts += ["--data-dir", args.data_dir]
    return shlex.join(parts)


def cmd_analyze(args: argparse.Namespace) -> int:
    from linmix.analyze.report import analyze

    out = args.out or f"runs/analyze-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = analyze([args.checkpoint, *args.compare], out, tokens=args.tokens, seed=args.seed,
                      data_dir=args.data_dir, progress=not args.quiet, command=command_line(args, out))
    for model in summary["models"]:
        pr = model["participation_ratio"]
        print(f"{model['label']}: {len(pr) - 1} layers, {model['params']:,} parameters, {model['tokens']} tokens, "
              f"participation ratio {pr[0]:.1f} -> {pr[-1]:.1f}")
    print(f"figures, summary.json and README.md in {out}")
    return 0
