"""The ``linmix`` command. It only parses arguments and calls library functions.

Each command family lives beside the code it drives and contributes its sub-commands through a
``register(subparsers)`` function; errors the library raises for bad input (``ValueError``,
``FileNotFoundError``) become one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: modules that add sub-commands, in the order ``linmix --help`` lists them
COMMAND_MODULES = ("linmix.train.cli", "linmix.bench.cli", "linmix.compare.cli",
                   "linmix.compare.experiments_cli", "linmix.compare.ablation_cli", "linmix.analyze.cli",
                   "linmix.distill.cli", "linmix.distill.demo_cli", "linmix.distill.hf_cli")


class UsageError(Exception):
    """Bad command-line input found after parsing (exit code 2)."""


def cmd_mixers(args: argparse.Namespace) -> int:
    """Print every registered mixer class with its first docstring line and its options with defaults."""
    from linmix.mixers import MIXERS, mixer_options

    width = max(len(n) for n in MIXERS)
    for name, cls in MIXERS.items():
        doc = (cls.__doc__ or "").strip().splitlines()
        opts = ", ".join(f"{k}={v!r}" for k, v in mixer_options(name).items()) or "-"
        print(f"{name:<{width}}  {doc[0] if doc else ''}  [options: {opts}]")
    return 0


def format_error(command: str, err: BaseException) -> str:
    """``linmix CMD: error: <first line>`` then the message's hint lines, indented; no traceback."""
    lines = [line.rstrip() for line in str(err).strip().splitlines() if line.strip()] or [type(err).__name__]
    return "\n".join([f"linmix {command}: error: {lines[0]}", *(f"  {line.strip()}" for line in lines[1:])])


def build_parser() -> argparse.ArgumentParser:
    from linmix import __version__

    parser = argparse.ArgumentParser(
        prog="linmix",
        description="Sub-quadratic token mixers: train, sample, benchmark and compare them against attention.",
    )
    parser.add_argument("--version", action="version", version=f"linmix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    mixers = sub.add_parser("mixers", help="list the registered mixers and their options")
    mixers.set_defaults(func=cmd_mixers)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, FileNotFoundError, NotADirectoryError) as err:
        print(format_error(args.command, err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"linmix {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
