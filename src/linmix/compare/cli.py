"""``linmix compare lm|classify|multimodal``: several layer specs, one budget, one table.

Flags map onto a :class:`~linmix.config.CompareConfig`: ``--config FILE`` (TOML/JSON with a ``[base]``
training config plus ``candidates``, ``seeds``, ``lrs``...), then every training field as a flag for the
base (``--max-len``, ``--optim.beta2`` ...), then the comparison's own flags. ``multimodal`` also takes
``--drop-feature NAME`` (repeatable: ``data.drop_features``).
"""
from __future__ import annotations

import argparse
from typing import Any

from linmix.config import COMPARE_DEFAULTS, CompareConfig, TrainConfig
from linmix.config_io import add_config_flags, overrides_from_args, read_config_file

#: compare flags that are not training fields (and the training flags they replace)
OWN = ("layers", "lr", "out")
#: training fields that only regressors have
MULTIMODAL_ONLY = ("fusion", "target", "valid_fraction")
#: what each task compares, for its help line
WHAT = {"lm": "language models", "classify": "classifiers",
        "multimodal": "text + numeric regressors (the summation papers' fusion claim; ridge reference)"}


def register(subparsers) -> None:
    """Add ``linmix compare``."""
    parser = subparsers.add_parser("compare", help="train several mixers on one budget and print one table")
    tasks = parser.add_subparsers(dest="task", metavar="TASK")
    tasks.required = True
    for task in COMPARE_DEFAULTS:
        defaults = COMPARE_DEFAULTS[task]["candidates"]
        p = tasks.add_parser(task, help=f"compare {WHAT[task]}")
        add_config_flags(p, task, skip=OWN + (() if task == "multimodal" else MULTIMODAL_ONLY))
        p.add_argument("--layers", action="append", metavar="SPEC",
                       help=f"a candidate layer spec, inline options allowed; repeat the flag (default: "
                            f"{' vs '.join(defaults)}). Classifiers take SPEC@bare for the summation papers' "
                            "embedding -> mixer -> pool design" + (
                                "; regressors SPEC+FUSION (add, concat, or text: no numeric branch) and "
                                "'ridge' (RidgeCV on the numeric inputs alone)" if task == "multimodal" else ""))
        if task == "multimodal":
            p.add_argument("--drop-feature", action="append", metavar="NAME", dest="drop_feature",
                           help="leave this numeric input out, e.g. 'Recommended IND' (which nearly determines "
                                "Rating); repeat for several")
        p.add_argument("--baseline", help="the candidate others are sized to and compared with "
                                          "(default: the pure attention one)")
        p.add_argument("--lr", type=float, action="append", metavar="LR",
                       help="learning rate; repeat for a grid every candidate sweeps (best of each reported)")
        p.add_argument("--seeds", type=int, help="seeds per candidate; mean ± std reported (default "
                                                 f"{COMPARE_DEFAULTS[task].get('seeds', 1)})")
        p.add_argument("--time-budget", type=float, metavar="SECONDS", dest="time_budget",
                       help="equal training time per candidate instead of equal steps: a short timing probe "
                            "turns the budget into each candidate's step count")
        p.add_argument("--out", default=None, help="output directory (default runs/compare-TASK-DATASET)")
        p.add_argument("--resume", action="store_true",
                       help="continue an interrupted comparison in --out: finished runs are read back, the rest train")
        p.add_argument("--no-match-params", action="store_true",
                       help="keep every candidate at --d-model instead of sizing it to the baseline's parameters")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=cmd_compare)


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    """The comparison the flags describe: the ``--config`` file (if any), overridden by every flag given."""
    config = CompareConfig(base=TrainConfig(task=args.task))
    if args.config:
        config = CompareConfig.from_dict(read_config_file(args.config), str(args.config))
        if config.task != args.task:
            raise ValueError(f"{args.config} compares {config.task!r} models; run it with linmix compare "
                             f"{config.task}")
    overrides = overrides_from_args(args)
    if args.quiet:
        overrides["run.progress"] = False
    if getattr(args, "drop_feature", None):
        overrides["data.drop_features"] = list(args.drop_feature)
    own: dict[str, Any] = {"candidates": args.layers, "baseline": args.baseline, "lrs": args.lr,
                           "seeds": args.seeds, "time_budget_s": args.time_budget, "out": args.out}
    if args.no_match_params:
        own["match_params"] = False
    changes = {k: v for k, v in own.items() if v is not None}
    return CompareConfig(**{**config.to_dict(), "base": config.base.with_overrides(overrides), **changes})


def cmd_compare(args: argparse.Namespace) -> int:
    from linmix.compare.run import run_compare

    result = run_compare(config_from_args(args), resume=args.resume)
    out = result["out"]
    if args.task != "multimodal":
        print(f"quality per second (training loss against training seconds): {out}/loss_vs_time.png\n")
    print(result["markdown"])
    print(f"written to {out}/ (loss_vs_time.png, val_curves.png, results.md, results.csv, runs.json)")
    return 0
