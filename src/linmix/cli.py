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
COMMAND_MODULES = ("linmix.train.cli", "linmix.bench.cli", "linmix.compare.cli")


class UsageError(Exception):
    """Bad command-line input found after parsing (exit code 2)."""


def cmd_mixers(args: argparse.Namespace) -> int:
    """Print every registered mixer with its first docstring line and options."""
    from linmix.mixers import MIXERS, mixer_options

    width = max(len(n) for n in MIXERS)
    for name, factory in MIXERS.items():
        doc = (factory.__doc__ or "").strip().splitlines()
        opts = ", ".join(sorted(mixer_options(name))) or "-"
        print(f"{name:<{width}}  {doc[0] if doc else ''}  [options: {opts}]")
    return 0


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
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"linmix {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"linmix {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
