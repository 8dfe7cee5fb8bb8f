"""``linmix distill``: turn a trained linmix language model's attention into another mixer by attention
transfer and recovery finetuning (:func:`linmix.distill.pipeline.distill_run`).

Only parses arguments; bad input (an unknown mixer, a missing run, data that cannot be found, a
mismatched ``--out``) is a ``ValueError``/``FileNotFoundError`` that :mod:`linmix.cli` prints as one line
with exit code 2. Hugging Face models are distilled from Python (:mod:`linmix.distill`) or by
``linmix distill-hf`` (:mod:`linmix.distill.hf_cli`).
"""
from __future__ import annotations

import argparse
import shlex
import time
from typing import Any

from linmix.train.cli import _one_line_errors

EPILOG = """examples:
  linmix distill --checkpoint runs/attn --mixer linear_attention --out runs/attn-to-linear
  linmix distill --checkpoint runs/attn --mixer summation --keep -1 --transfer-steps 300 \\
      --recovery-steps 300 --kl-weight 0.5 --lora-rank 8 --out runs/attn-to-sum
running the same command again resumes an interrupted distillation.
"""


def parse_keep(text: str | None) -> Any:
    """``--keep``: none, ``auto``, a ratio in (0, 1) or comma-separated layer indices (``0,-1``)."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    text = text.strip()
    if text == "auto":
        return "auto"
    try:
        if "." in text:
            return float(text)
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--keep takes none, auto, a ratio in (0, 1) or layer indices like 0,-1; got {text!r}") from None


def register(subparsers: Any) -> None:
    """Add ``linmix distill`` to the ``linmix`` parser."""
    p = subparsers.add_parser(
        "distill", help="convert a trained LM's attention to another mixer by attention transfer + recovery",
        description="Load a `linmix train lm` run, replace its attention layers by MIXER (linmix.convert), fit "
                    "each new mixer to the attention it replaced (attention transfer, LoLCATs arXiv 2410.10254 / "
                    "Hedgehog arXiv 2402.04347), finetune end to end (recovery), and report the validation loss "
                    "of the teacher, the plain swap and both stages (summary.json, README.md).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _one_line_errors(p)
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory or checkpoint folder")
    p.add_argument("--mixer", required=True, metavar="NAME", help="the mixer to convert to (see linmix mixers)")
    p.add_argument("--keep", default=None, metavar="K",
                   help="attention layers to keep: auto, a ratio like 0.25 or indices like 0,-1 (default none)")
    p.add_argument("--data", default=None, metavar="DATASET", help="dataset (default: the run's own)")
    p.add_argument("--data-dir", default=None, metavar="D",
                   help="data root holding the dataset (default: the run's own, $LINMIX_DATA, cache)")
    p.add_argument("--transfer-steps", type=int, default=200, metavar="N", help="attention-transfer steps")
    p.add_argument("--recovery-steps", type=int, default=200, metavar="M", help="recovery finetuning steps")
    p.add_argument("--transfer-lr", type=float, default=1e-3, metavar="LR", help="default 1e-3")
    p.add_argument("--recovery-lr", type=float, default=1e-4, metavar="LR", help="default 1e-4")
    p.add_argument("--loss", choices=("mse", "nl2"), default="mse",
                   help="transfer loss: mse or normalised L2 ||y - t||^2 / ||t||^2")
    p.add_argument("--kl-weight", type=float, default=0.0, metavar="W",
                   help="recovery loss = (1 - W) * next-token CE + W * KL(original || converted)")
    p.add_argument("--lora-rank", type=int, default=0, metavar="R",
                   help="> 0: recovery trains rank-R adapters on the mixers' copied projections")
    p.add_argument("--batch-size", type=int, default=None, metavar="B", help="default: the run's")
    p.add_argument("--eval-batches", type=int, default=20, metavar="N", help="validation batches per evaluation")
    p.add_argument("--log-every", type=int, default=10, metavar="N", help="log the losses every N steps")
    p.add_argument("--save-every", type=int, default=100, metavar="N", help="save the resumable state every N steps")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the new mixers' initialisation")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--out", default=None, metavar="OUT", help="output folder (default runs/distill-<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_distill)


def command_line(args: argparse.Namespace, out: str) -> str:
    """The command that reproduces (or resumes) this distillation, for the README."""
    parts = ["linmix", "distill", "--checkpoint", args.checkpoint, "--mixer", args.mixer]
    for flag, value in (("--keep", args.keep), ("--data", args.data), ("--data-dir", args.data_dir)):
        if value is not None:
            parts += [flag, str(value)]
    for flag in ("transfer_steps", "recovery_steps", "transfer_lr", "recovery_lr", "loss", "kl_weight", "lora_rank",
                 "batch_size", "eval_batches", "log_every", "save_every", "seed"):
        value = getattr(args, flag)
        if value is not None:
            parts += ["--" + flag.replace("_", "-"), str(value)]
    if args.device != "cpu":
        parts += ["--device", args.device]
    return shlex.join([*parts, "--out", out])


def cmd_distill(args: argparse.Namespace) -> int:
    from linmix.distill.pipeline import distill_run
    from linmix.mixers.registry import check_mixer_name
    from linmix.train.distributed import resolve_device

    check_mixer_name(args.mixer)
    keep = parse_keep(args.keep)
    device = str(resolve_device(args.device))
    out = args.out or f"runs/distill-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = distill_run(args.checkpoint, args.mixer, out, keep=keep, dataset=args.data, data_dir=args.data_dir,
                          transfer_steps=args.transfer_steps, recovery_steps=args.recovery_steps,
                          transfer_lr=args.transfer_lr, recovery_lr=args.recovery_lr, loss=args.loss,
                          kl_weight=args.kl_weight, lora_rank=args.lora_rank, batch_size=args.batch_size,
                          eval_batches=args.eval_batches, log_every=args.log_every, save_every=args.save_every,
                          seed=args.seed, device=device, progress=not args.quiet,
                          command=command_line(args, out))
    val = summary["val_loss"]
    print(f"{len(summary['replaced'])} layers -> {args.mixer}, {len(summary['kept'])} kept; val loss: teacher "
          f"{val['teacher']:.4f}, swap {val['swap']:.4f}, transfer {val['transfer']:.4f}, "
          f"recovery {val['recovery']:.4f}")
    print(f"model/, summary.json and README.md in {out}")
    return 0
