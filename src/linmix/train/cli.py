"""``linmix train {lm,classify,multimodal}``, ``linmix train-schedules`` and ``linmix sample``: parse
arguments, call the library.

The training flags are generated from the config dataclasses (:mod:`linmix.config_io`): each defaults to
``None`` (not given), so the task's defaults apply, a ``--config`` file overrides them, flags override the
file, and ``--resume`` knows which options were given explicitly.
"""
from __future__ import annotations

import argparse
import os
import sys
import types
from pathlib import Path
from typing import Any, NoReturn

from linmix.config import TrainConfig
from linmix.config_io import add_config_flags, overrides_from_args, read_config_file

TASK_HELP = {
    "lm": "causal language model on a text corpus (default: Tiny Shakespeare, chars)",
    "classify": "text classifier (default: AG News, word tokenizer K=10,000, max_len 256)",
    "multimodal": "text + numeric regression (default: clothing reviews -> Rating, MSE; RMSE/MAE reported)",
}

EPILOG = """examples:
  linmix train lm --dataset tinyshakespeare --out runs/shakespeare
  linmix train lm --layers attention*4 --steps 2000 --out runs/attn
  linmix train lm --layers "summation*3,local_attention(window=64)" --optim.lr 1e-3 --out runs/local
  linmix train lm --config exp.toml --run.steps 500           # a config file, one field overridden
  linmix train lm --out runs/shakespeare --resume            # continue a killed run exactly
  linmix train classify --dataset imdb --layers summation --epochs 2 --out runs/imdb
  torchrun --standalone --nproc_per_node 2 -m linmix.cli train lm --out runs/ddp   # data parallel
"""


def register(subparsers: Any) -> None:
    """Add ``train`` (with ``lm``, ``classify``, ``multimodal``) and ``sample`` to the ``linmix`` parser."""
    train = subparsers.add_parser("train", help="train a language model, classifier or multimodal regressor",
                                  description="Train a model; writes metrics, checkpoints, summary and a loss plot "
                                              "to --out.", epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    _one_line_errors(train)
    tasks = train.add_subparsers(dest="task", metavar="TASK")
    tasks.required = True
    for task in ("lm", "classify", "multimodal"):
        p = tasks.add_parser(task, help=TASK_HELP[task], description=TASK_HELP[task],
                             epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        _one_line_errors(p)
        _add_train_options(p, task)
        p.set_defaults(func=cmd_train)

    schedules = subparsers.add_parser(
        "train-schedules", help="warmup+cosine vs warmup+constant vs the Q-learning LR controller, same runs",
        description="Train each LR-schedule contender (cosine, constant, qlearning) for every seed under --out "
                    "(default runs/schedules-TASK-DATASET) and write schedules.csv/.md/.png there; a rerun "
                    "reads finished runs and continues unfinished ones (linmix.train.schedule_compare).")
    _one_line_errors(schedules)
    schedule_tasks = schedules.add_subparsers(dest="task", metavar="TASK")
    schedule_tasks.required = True
    for task in ("lm", "classify", "multimodal"):
        p = schedule_tasks.add_parser(task, help=TASK_HELP[task], description=TASK_HELP[task])
        _one_line_errors(p)
        _add_train_options(p, task, resume=False, skip=("schedule", "lr_controller"))  # the contenders set them
        p.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds per contender (default 3)")
        p.add_argument("--contenders", default="cosine,constant,qlearning", metavar="LIST",
                       help="comma-separated subset of cosine, constant, qlearning")
        p.set_defaults(func=cmd_train_schedules)

    sample = subparsers.add_parser("sample", help="generate text from a trained language model (streams)",
                                   description="Stream text from a run directory or checkpoint folder.")
    _one_line_errors(sample)
    sample.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory or checkpoint folder")
    sample.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    sample.add_argument("--max-new-tokens", type=int, default=500, metavar="N")
    sample.add_argument("--temperature", type=float, default=0.8, metavar="T", help="0 = greedy")
    sample.add_argument("--top-k", type=int, default=None, metavar="K")
    sample.add_argument("--top-p", type=float, default=None, metavar="P")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    sample.add_argument("--no-prompt-echo", action="store_true", help="print only the generated text")
    sample.set_defaults(func=cmd_sample)


def _add_train_options(p: argparse.ArgumentParser, task: str, resume: bool = True, skip: tuple[str, ...] = ()) -> None:
    """Every config field as a flag (``--lr`` / ``--optim.lr``) but those in ``skip``, plus ``--config``,
    ``--quiet`` and (with ``resume``) ``--resume``."""
    skip += () if task == "multimodal" else ("fusion", "target", "valid_fraction")
    skip += ("pooling", "arch") if task == "lm" else ()
    add_config_flags(p, task, skip=skip)
    p.add_argument("--block-size", dest="cfg__model__max_len", type=int, metavar="V",
                   help="the same as --max-len (an LM's block size)")
    if resume:
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's :class:`TrainConfig`: task defaults <- ``--config`` file <- flags."""
    overrides = overrides_from_args(args)
    if args.quiet:
        overrides["run.progress"] = False
    base = TrainConfig(task=args.task)
    if args.config:
        data = read_config_file(args.config)
        task = data.get("task", args.task)
        if task != args.task:
            raise ValueError(f"{args.config} is a {task!r} config; run it with linmix train {task}")
        base = TrainConfig.from_dict(data, str(args.config))
    return base.with_overrides(overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from linmix.train.loop_parts import TrainingDiverged
    from linmix.train.run import run_training

    try:
        summary = run_training(config_from_args(args), resume=args.resume)
    except TrainingDiverged as err:
        if _is_rank0():
            print(f"linmix train: error: {err}", file=sys.stderr)
        return 1
    if _is_rank0():  # under torchrun only rank 0 reports
        print(format_summary(summary))
    return 0


def cmd_train_schedules(args: argparse.Namespace) -> int:
    from linmix.train.schedule_compare import TABLE_MD, compare_schedules, default_out

    config = config_from_args(args)
    out = config.run.out or default_out(config)
    compare_schedules(config, seeds=args.seeds, out=out, contenders=[c.strip() for c in args.contenders.split(",")])
    if _is_rank0():
        print((Path(out) / TABLE_MD).read_text() + f"written to {out}")
    return 0


def _is_rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines for the terminal: final and best metric, time, where the run is."""
    final = summary.get("final") or {}
    best = summary.get("best") or {}
    shown = ", ".join(f"{k} {v:.4f}" for k, v in final.items() if not k.endswith(("_tokens", "_examples")))
    lines = [f"{summary['status']}: {summary['steps_done']}/{summary['total_steps']} steps in "
             f"{summary['wall_time_s'] / 60:.1f} min, {summary['parameters']:,} parameters"]
    if shown:
        lines.append(f"final (whole validation split): {shown}")
    if best.get("best") is not None:
        lines.append(f"best {best['metric']} {best['best']:.4f} at step {best['best_step']}")
    if summary.get("message"):
        lines.append(summary["message"])
    lines.append(f"run directory: {summary.get('run_dir')}")
    return "\n".join(lines)


def cmd_sample(args: argparse.Namespace) -> int:
    from linmix.train.distributed import resolve_device
    from linmix.train.sample import check_sampling, load_lm, sample_text

    device = resolve_device(args.device)
    model, tokenizer = load_lm(args.checkpoint, device)
    check_sampling(tokenizer, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p)
    out = sys.stdout

    def stream(piece: str) -> None:
        out.write(piece)
        out.flush()

    if not args.no_prompt_echo:
        stream(args.prompt)
    sample_text(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                args.seed, stream=stream)
    out.write("\n")
    out.flush()
    return 0


def _one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Argument errors as one line (``linmix train lm: error: ...``) and exit code 2, without the usage block."""

    def error(self: argparse.ArgumentParser, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    parser.error = types.MethodType(error, parser)  # type: ignore[method-assign]
