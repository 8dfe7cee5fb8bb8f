"""``linmix compare lm|classify``: several layer specs, one budget, one table."""
from __future__ import annotations

import argparse

from linmix.compare.run import DEFAULT_CLASSIFY, DEFAULT_LM

#: the README's main job: about 10 minutes on 2 CPU cores for the three default LM candidates
DEFAULT_LM_STEPS = 600


def register(subparsers) -> None:
    """Add ``linmix compare``."""
    parser = subparsers.add_parser("compare", help="train several mixers on one budget and print one table")
    tasks = parser.add_subparsers(dest="task", metavar="TASK")
    tasks.required = True
    for task, defaults in (("lm", DEFAULT_LM), ("classify", DEFAULT_CLASSIFY)):
        p = tasks.add_parser(task, help=f"compare {'language models' if task == 'lm' else 'classifiers'}")
        p.add_argument("--dataset", help="dataset name (default tinyshakespeare / ag_news)")
        p.add_argument("--layers", action="append", metavar="SPEC",
                       help=f"a candidate layer spec; repeat the flag (default: {' vs '.join(defaults)}). "
                            "Classifiers take SPEC@bare for the summation papers' embedding -> mixer -> pool design")
        p.add_argument("--baseline", help="the candidate others are sized to and compared with "
                                          "(default: the pure attention one)")
        p.add_argument("--d-model", type=int, default=128, help="the baseline's width (default 128)")
        p.add_argument("--n-heads", type=int, default=4, help="heads of head-based mixers (default 4)")
        p.add_argument("--steps", type=int, help="training steps per run (default 600 for lm, task default else)")
        p.add_argument("--epochs", type=float, help="passes over the training data (instead of --steps)")
        p.add_argument("--time-budget", type=float, metavar="SECONDS", dest="time_budget",
                       help="equal training time per candidate instead of equal steps: a short timing probe "
                            "turns the budget into each candidate's step count")
        p.add_argument("--warmup", type=int, help="LR warmup steps (task default)")
        p.add_argument("--min-lr-ratio", type=float, help="cosine floor as a fraction of the LR (default 0.1)")
        p.add_argument("--weight-decay", type=float, help="AdamW weight decay on matrices (default 0.1)")
        p.add_argument("--beta2", type=float, help="AdamW beta2 (default 0.95)")
        p.add_argument("--eval-batches", type=int, help="validation batches per periodic evaluation")
        p.add_argument("--final-eval-batches", type=int,
                       help="bound the final evaluation to N batches (default: the whole validation split)")
        p.add_argument("--lr", type=float, action="append", metavar="LR",
                       help="learning rate; repeat for a grid every candidate sweeps (best of each reported)")
        p.add_argument("--seeds", type=int, default=1, help="seeds per candidate; mean ± std reported (default 1)")
        p.add_argument("--max-len", type=int, help="LM block size / classifier max length")
        p.add_argument("--batch-size", type=int, help="batch size")
        p.add_argument("--tokenizer", choices=("char", "word", "bpe"), help="tokenizer (task default)")
        p.add_argument("--vocab-size", type=int, help="word / bpe vocabulary size")
        p.add_argument("--eval-every", type=int, help="validation every N steps")
        p.add_argument("--data-dir", metavar="DIR", help="data root (default $LINMIX_DATA)")
        p.add_argument("--out", default=None, help="output directory (default runs/compare-TASK-DATASET)")
        p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
        p.add_argument("--no-match-params", action="store_true",
                       help="keep every candidate at --d-model instead of sizing it to the baseline's parameters")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from linmix.compare.run import CompareConfig, run_compare

    explicit = args.steps is not None or args.epochs is not None or args.time_budget is not None
    steps = args.steps if explicit else (DEFAULT_LM_STEPS if args.task == "lm" else None)
    if steps is not None and steps < 1:
        raise ValueError(f"--steps must be a positive integer, got {steps}")
    dataset = args.dataset or ("tinyshakespeare" if args.task == "lm" else "ag_news")
    config = CompareConfig(task=args.task, dataset=dataset, candidates=args.layers or [], baseline=args.baseline,
                           d_model=args.d_model, n_heads=args.n_heads, max_len=args.max_len,
                           batch_size=args.batch_size, steps=steps, epochs=args.epochs,
                           time_budget_s=args.time_budget, warmup=args.warmup, min_lr_ratio=args.min_lr_ratio,
                           weight_decay=args.weight_decay, beta2=args.beta2, eval_batches=args.eval_batches,
                           final_eval_batches=args.final_eval_batches, lrs=args.lr or [], seeds=args.seeds,
                           tokenizer=args.tokenizer, vocab_size=args.vocab_size,
                           eval_every=args.eval_every or (100 if args.task == "lm" and not explicit else None),
                           data_dir=args.data_dir, out=args.out or f"runs/compare-{args.task}-{dataset}",
                           device=args.device, progress=not args.quiet, match_params=not args.no_match_params)
    result = run_compare(config)
    print(result["markdown"])
    print(f"written to {result['out']}/ (results.md, results.csv, runs.json, val_curves.png)")
    return 0
