"""``linmix bench ops|decode|train``: argument parsing only; the work is in the library modules."""
from __future__ import annotations

import argparse
import shlex
import sys


def _csv_list(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _int_list(text: str | None, what: str) -> list[int] | None:
    if not text:
        return None
    from linmix.bench.ops import parse_lengths

    try:
        return parse_lengths(text)
    except ValueError as err:
        raise ValueError(f"--{what}: {err}") from None


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (rebuilt from the parsed options that differ from default)."""
    words = ["linmix", "bench", args.bench_command]
    for action in args._parser._actions:
        if not action.option_strings or action.dest in ("help",):
            continue
        value = getattr(args, action.dest, None)
        if value == action.default:
            continue
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            words.append(flag)
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def _common(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--quick", action="store_true", help="small preset that finishes in about 2 minutes")
    p.add_argument("--d-model", type=int, default=None, help="feature size D (default 256)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _log(msg: str) -> None:
    try:
        from tqdm.auto import tqdm

        tqdm.write(msg, file=sys.stderr)
    except ImportError:  # pragma: no cover
        print(msg, file=sys.stderr)


def cmd_ops(args: argparse.Namespace) -> int:
    from linmix.bench.ops import OpsConfig
    from linmix.bench.ops import run_ops
    from linmix.bench.report import write_ops_outputs

    over = dict(mixers=_csv_list(args.mixers), lengths=_int_list(args.lengths, "lengths"), modes=args.modes,
                batch_size=args.batch_size, d_model=args.d_model, repeats=args.repeats,
                memory_limit_mb=args.memory_limit_mb, device=args.device, dtype=args.dtype, seed=args.seed,
                threads=args.threads, budget_s=args.budget_s, memory_repeats=args.memory_repeats)
    if args.no_memory:
        over["memory"] = False
    given = {k: v for k, v in over.items() if v is not None}
    cfg = OpsConfig.quick_preset(**over) if args.quick else OpsConfig(**given)
    result = run_ops(cfg, progress=not args.no_progress, command=_command(args), log=_log)
    files = write_ops_outputs(result, args.out)
    _print_targets(result["summary"]["targets"])
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from linmix.bench.decode import DecodeConfig, run_decode, write_decode_outputs

    over = dict(positions=_int_list(args.positions, "positions"), models=args.models, d_model=args.d_model,
                new_tokens=args.new_tokens, repeats=args.repeats, device=args.device, seed=args.seed,
                threads=args.threads)
    if args.no_memory:
        over["memory"] = False
    cfg = DecodeConfig.quick_preset(**over) if args.quick else DecodeConfig(**{k: v for k, v in over.items()
                                                                               if v is not None})
    result = run_decode(cfg, progress=not args.no_progress, command=_command(args), log=_log)
    files = write_decode_outputs(result, args.out)
    _print_targets(result["summary"]["targets"])
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from linmix.bench.train_speed import TrainConfig, run_train, write_train_outputs

    over = dict(lengths=_int_list(args.lengths, "lengths"), models=args.models, d_model=args.d_model,
                tokens_per_step=args.tokens_per_step, steps=args.steps, device=args.device, dtype=args.dtype,
                seed=args.seed, threads=args.threads)
    if args.no_memory:
        over["memory"] = False
    cfg = TrainConfig.quick_preset(**over) if args.quick else TrainConfig(**{k: v for k, v in over.items()
                                                                             if v is not None})
    result = run_train(cfg, progress=not args.no_progress, command=_command(args), log=_log)
    files = write_train_outputs(result, args.out)
    _print_targets(result["summary"]["targets"])
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


def _print_targets(targets: list[dict]) -> None:
    for t in targets:
        extra = f" ({t['detail']})" if t.get("detail") else ""
        print(f"[{t['status']:>6}] {t['target']}: {t['measured']}{extra}")


def register(subparsers) -> None:
    """Add ``linmix bench {ops,decode,train}`` to the ``linmix`` parser."""
    bench = subparsers.add_parser("bench", help="benchmarks: operator scaling, decoding, training speed",
                                  description="Benchmarks. Each writes CSV, JSON, markdown, PNGs and a README "
                                              "with the command, machine and config into --out.")
    sub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    sub.required = True

    ops = sub.add_parser("ops", help="latency and memory of every mixer vs length, against attention and floors")
    _common(ops, "results/ops")
    ops.add_argument("--mixers", default=None, help="comma-separated subset (default: every registered mixer)")
    ops.add_argument("--modes", default=None, help="causal,bidir (default both)")
    ops.add_argument("--lengths", default=None, help="256:16384 (doubling) or a list 256,1024 (default 256:16384)")
    ops.add_argument("--batch-size", type=int, default=None, help="batch size B (default 1)")
    ops.add_argument("--repeats", type=int, default=None, help="timed repeats per point (default 7; quick 3)")
    ops.add_argument("--budget-s", type=float, default=None,
                     help="seconds of timing per point before repeats are cut (>= 3 kept; default 25)")
    ops.add_argument("--memory-limit-mb", type=float, default=None,
                     help="stop a case once its predicted peak memory exceeds this (default 8192)")
    ops.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                     help="float32, or bfloat16 autocast (default float32)")
    ops.add_argument("--memory-repeats", type=int, default=None,
                     help="fresh processes per memory point, median reported (default 3; quick 1)")
    ops.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory probes")
    ops.set_defaults(func=cmd_ops, _parser=ops)

    dec = sub.add_parser("decode", help="per-token latency and memory of LanguageModel.generate vs position")
    _common(dec, "results/decode")
    dec.add_argument("--positions", default=None, help="128:16384 (doubling) or a list (default 128:16384)")
    dec.add_argument("--models", default=None,
                     help="subset of summation,hybrid,attention, or name=layers;name=layers")
    dec.add_argument("--new-tokens", type=int, default=None,
                     help="tokens timed per position and round (default 32)")
    dec.add_argument("--repeats", type=int, default=None, help="rounds over the positions (default 3)")
    dec.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory probes")
    dec.set_defaults(func=cmd_decode, _parser=dec)

    tr = sub.add_parser("train", help="end-to-end training tokens/s of same-size LMs vs length")
    _common(tr, "results/train")
    tr.add_argument("--lengths", default=None, help="list or range of T (default 512,2048,8192)")
    tr.add_argument("--models", default=None,
                    help="subset of attention,summation,hybrid,spectral,linear_attention, or name=layers;...")
    tr.add_argument("--tokens-per-step", type=int, default=None, help="tokens per batch (default 8192)")
    tr.add_argument("--steps", type=int, default=None, help="timed steps per model and length (default 5)")
    tr.add_argument("--dtype", default=None, choices=("float32", "bfloat16"))
    tr.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory probes")
    tr.set_defaults(func=cmd_train, _parser=tr)
