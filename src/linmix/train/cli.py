"""``linmix train {lm,classify,multimodal}`` and ``linmix sample``: parse arguments, call the library.

Every training option defaults to ``None`` here so that the task's defaults (``TrainConfig.resolved``)
apply, and so that ``--resume`` can tell which options were given explicitly.
"""
from __future__ import annotations

import argparse
import os
import sys
import types
from typing import Any, NoReturn

from linmix.train.config import AMP_MODES, CONTROLLERS, DTYPES, SCHEDULES, TASK_DEFAULTS, TrainConfig

TASK_HELP = {
    "lm": "causal language model on a text corpus (default: Tiny Shakespeare, chars)",
    "classify": "text classifier (default: AG News, word tokenizer K=10,000, max_len 256)",
    "multimodal": "text + numeric regression (default: clothing reviews -> Rating, MSE; RMSE/MAE reported)",
}

EPILOG = """examples:
  linmix train lm --dataset tinyshakespeare --out runs/shakespeare
  linmix train lm --layers attention*4 --steps 2000 --out runs/attn
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


def _add_train_options(p: argparse.ArgumentParser, task: str) -> None:
    d = TASK_DEFAULTS[task]
    length = "--block-size" if task == "lm" else "--max-len"
    add = p.add_argument
    add("--dataset", help=f"dataset name (default {d['dataset']})")
    add("--layers", metavar="SPEC", help=f"layer spec, e.g. 'summation*3,attention' (default {d['layers']!r})")
    add("--out", metavar="DIR", help="run directory (default runs/<task>-<dataset>-<time>)")
    add("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    add("--d-model", type=int, help=f"model width (default {d['d_model']})")
    add("--n-heads", type=int, help=f"heads of attention-like mixers (default {d['n_heads']})")
    add("--max-len", "--block-size", dest="max_len", type=int,
        help=f"{'LM block size' if task == 'lm' else 'max tokens per text'} (default {d['max_len']}); "
             f"{length} is the same option")
    add("--batch-size", type=int, help=f"per-process batch; global = batch x processes (default {d['batch_size']})")
    length_default = f"steps {d['steps']}" if "steps" in d else f"epochs {d['epochs']}"
    add("--steps", type=int, help=f"optimizer steps (default: {length_default})")
    add("--epochs", type=float, help="passes over the training data (alternative to --steps)")
    add("--lr", type=float, help=f"peak learning rate (default {d['lr']})")
    add("--min-lr-ratio", type=float, help="cosine floor as a fraction of --lr (default 0.1)")
    add("--warmup", type=int, help=f"linear warmup steps (default {d['warmup']})")
    add("--schedule", choices=SCHEDULES, help="LR schedule after warmup (default cosine)")
    add("--weight-decay", type=float, help="AdamW weight decay on matrices (default 0.1)")
    add("--beta1", type=float, help="AdamW beta1 (default 0.9)")
    add("--beta2", type=float, help="AdamW beta2 (default 0.95; nanoGPT's char Shakespeare uses 0.99)")
    add("--grad-clip", type=float, help="clip the global gradient norm (0 = off; default 1.0)")
    add("--eval-every", type=int, help=f"evaluate every N steps (default {d['eval_every']})")
    add("--eval-batches", type=int, help=f"validation batches per periodic evaluation (default {d['eval_batches']};"
                                         " the final evaluation uses the whole split)")
    add("--final-eval-batches", type=int, help="bound the final evaluation to N batches (default: whole split)")
    add("--checkpoint-every", type=int, help="checkpoint every N steps (default: --eval-every)")
    add("--log-every", type=int, help="log the training loss every N steps (default 10)")
    add("--patience", type=int, help=f"early stopping after N evaluations without improvement, 0 = off "
                                     f"(default {d['patience']})")
    add("--seed", type=int, help="seed of initialisation, data order and sampling (default 0)")
    add("--tokenizer", choices=("char", "word", "bpe"), help=f"tokenizer (default {d['tokenizer']})")
    add("--vocab-size", type=int, help="vocabulary size of word / bpe tokenizers (default 10000 / 8192)")
    add("--positional", choices=("learned", "multiplicative", "none"), help="positional scheme (default learned)")
    add("--norm", choices=("pre", "post"), help="LayerNorm placement (default pre)")
    add("--dropout", type=float, help="dropout (default 0)")
    add("--ffn-mult", type=int, help="feed-forward width multiplier (default 4)")
    if task != "lm":
        add("--pooling", choices=("mean", "sum", "cls"), help="sequence pooling (default mean)")
        add("--arch", choices=("block", "bare"),
            help="block: residual blocks with feed-forward (default); bare: embedding -> mixers -> pool (the summation papers' design)")
    if task == "multimodal":
        add("--fusion", choices=("add", "concat"), help="text/numeric fusion (default add)")
        add("--target", help="target column (default Rating)")
    add("--amp", choices=AMP_MODES, help="autocast: bf16 (CPU/CUDA) or fp16 + GradScaler (CUDA) (default none)")
    add("--dtype", choices=DTYPES, help="parameter dtype (default float32)")
    add("--device", help="auto (CUDA if available), cpu, cuda or cuda:N (default auto)")
    add("--data-dir", metavar="DIR", help="data root (default $LINMIX_DATA, then ~/.cache/linmix)")
    add("--lr-controller", choices=CONTROLLERS,
        help="'qlearning': every 20 steps a tabular Q-learner (state: binned loss trend; actions: LR x "
             "0.5/0.9/1/1.1/1.5; reward: relative loss improvement; epsilon-greedy 0.1, seeded) rescales the "
             "schedule's LR within x0.05..x5; see linmix.train.qlearning (default none)")
    add("--quiet", action="store_true", help="no progress bar")


_FIELDS = ("dataset", "layers", "out", "d_model", "n_heads", "max_len", "batch_size", "steps", "epochs", "lr",
           "min_lr_ratio", "warmup", "schedule", "weight_decay", "beta1", "beta2", "grad_clip", "eval_every", "eval_batches", "final_eval_batches",
           "checkpoint_every", "log_every", "patience", "seed", "tokenizer", "vocab_size", "positional", "norm",
           "dropout", "ffn_mult", "pooling", "arch", "fusion", "target", "amp", "dtype", "device", "data_dir",
           "lr_controller")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A :class:`TrainConfig` holding only the options given on the command line (others at their defaults)."""
    given = {name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}
    if args.quiet:
        given["progress"] = False
    return TrainConfig(task=args.task, **given)


def cmd_train(args: argparse.Namespace) -> int:
    from linmix.train.loop import TrainingDiverged
    from linmix.train.run import run_training

    config = config_from_args(args)
    try:
        summary = run_training(config, resume=args.resume)
    except TrainingDiverged as err:
        if _is_rank0():
            print(f"linmix train: error: {err}", file=sys.stderr)
        return 1
    if _is_rank0():  # under torchrun only rank 0 reports
        print(format_summary(summary))
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
