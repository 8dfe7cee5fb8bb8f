"""``linmix bench ops|decode|train``: argument parsing only; every bench then runs the same way
(:func:`linmix.bench.runner.run_bench` and :func:`~linmix.bench.runner.write_bench`).

Options map onto the fields of the bench's config dataclass by name (``--d-model`` -> ``d_model``); an
option left out keeps the config's (or the ``--quick`` preset's) default. Mixer names and layer specs are
passed on as written, inline options (``local_attention(window=64)``) included.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields

from linmix.config import POSITIONAL


def command_line() -> str:
    """The command line as it was run (recorded in every output, so a result can be reproduced)."""
    return shlex.join(["linmix", *sys.argv[1:]])


def _lengths(flag: str):
    def convert(text: str) -> list[int]:
        from linmix.bench.registry import parse_lengths

        try:
            return parse_lengths(text)
        except ValueError as err:
            raise ValueError(f"--{flag}: {err}") from None
    return convert


def _mixers(text: str) -> list[str]:
    from linmix.bench.registry import split_specs

    return split_specs(text)


#: config fields whose option text needs converting
CONVERT = {"lengths": _lengths("lengths"), "positions": _lengths("positions"), "mixers": _mixers}


def config_from_args(config_cls, args: argparse.Namespace):
    """The bench config the options describe (the ``--quick`` preset under them when asked for)."""
    over = {}
    for f in fields(config_cls):
        value = getattr(args, f.name, None)
        if value is not None:
            over[f.name] = CONVERT.get(f.name, lambda v: v)(value)
    if getattr(args, "no_memory", False):
        over["memory"] = False
    return config_cls.quick_preset(**over) if args.quick else config_cls(**over)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the bench, write its files, print each target's status and the files written."""
    from linmix.bench.runner import bench_module, run_bench, write_bench

    config = config_from_args(bench_module(args.bench_command).Config, args)
    result = run_bench(args.bench_command, config, progress=not args.no_progress, command=command_line(),
                       targets=args.targets)
    files = write_bench(result, args.out)
    for t in result["summary"]["targets"]:
        extra = f" ({t['detail']})" if t.get("detail") else ""
        print(f"[{t['status']:>6}] {t['target']}: {t['measured']}{extra}")
    print(f"wrote {', '.join(str(f) for f in files)}")
    check = result["summary"].get("harness_check")
    if getattr(config, "check", False) and check is not None:
        verdict = "passed" if check["passed"] else "FAILED"
        print(f"harness check {verdict}: attention reached {check['accuracy']:.3f} (target {check['target']})")
        return 0 if check["passed"] else 1
    return 0


def _common(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--quick", action="store_true", help="small preset that finishes in about 2 minutes")
    p.add_argument("--d-model", type=int, default=None, help="feature size D (default 256)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=out, help=f"output folder (default {out})")
    p.add_argument("--targets", default=None, help="targets file (default: the packaged linmix/bench/targets.toml)")
    p.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory probes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench)


def _ops(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mixers", default=None,
                   help="comma-separated subset, options allowed: summation,local_attention(window=64) "
                        "(default: every registered mixer)")
    p.add_argument("--modes", default=None, help="causal,bidir (default both)")
    p.add_argument("--lengths", default=None, help="256:16384 (doubling) or a list 256,1024 (default 256:16384)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size B (default 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per point (default 7; quick 3)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="seconds of timing per point before repeats are cut (>= 3 kept; default 25)")
    p.add_argument("--memory-limit-mb", type=float, default=None,
                   help="stop a case once its predicted peak memory exceeds this (default 8192)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                   help="float32, or bfloat16 autocast (default float32)")
    p.add_argument("--memory-repeats", type=int, default=None,
                   help="fresh processes per memory point, median reported (default 3; quick 1)")


def _decode(p: argparse.ArgumentParser) -> None:
    p.add_argument("--positions", default=None, help="128:16384 (doubling) or a list (default 128:16384)")
    p.add_argument("--models", default=None, help="subset of summation,hybrid,attention, or name=layers;name=layers")
    p.add_argument("--new-tokens", type=int, default=None, help="tokens timed per position and round (default 32)")
    p.add_argument("--repeats", type=int, default=None, help="rounds over the positions (default 3)")
    p.add_argument("--positional", default=None, choices=POSITIONAL,
                   help="the LMs' positional scheme (default learned)")
    p.add_argument("--continuous", action="store_true", default=None,
                   help="one generation per round from the first position through the last (a length-free "
                        "model is built with max_len = the first position)")


def _train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lengths", default=None, help="list or range of T (default 512,2048,8192)")
    p.add_argument("--models", default=None,
                   help="subset of attention,summation,hybrid,spectral,linear_attention, or name=layers;...")
    p.add_argument("--tokens-per-step", type=int, default=None, help="tokens per batch (default 8192)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per model and length (default 5)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"))
    p.add_argument("--match-params", action="store_true", default=None,
                   help="size each model's width to the attention LM's parameter count at every length")


def _long(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=None,
                   help="subset of the causal mixer stacks (attention,summation,...,hybrid), or name=layers;...")
    p.add_argument("--n-heads", type=int, default=None, help="attention heads (default 4)")
    p.add_argument("--datasets", default=None,
                   help="corpus:tokenizer list (default tinyshakespeare:char,wikitext2:bpe; none: passkey only)")
    p.add_argument("--data-dir", default=None, help="datasets folder (default $LINMIX_DATA)")
    p.add_argument("--bpe-vocab", type=int, default=None, help="BPE vocabulary (default 8192)")
    p.add_argument("--positionals", default=None,
                   help="positional schemes, each model trained with each (default learned,rotary; also none, "
                        "multiplicative, sinusoidal)")
    p.add_argument("--train-len", type=int, default=None, help="training length T_train (default 256)")
    p.add_argument("--train-steps", type=int, default=None, help="LM training steps per model (default 1000)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default 16)")
    p.add_argument("--lr", type=float, default=None, help="AdamW peak learning rate, every model (default 1e-3)")
    p.add_argument("--eval-lengths", default=None, help="256:65536 (doubling) or a list (default 256:65536)")
    p.add_argument("--eval-tokens", type=int, default=None,
                   help="validation tokens scored per length, at least one window (default 65536)")
    p.add_argument("--no-extend", dest="extend", action="store_false", default=None,
                   help="evaluate the trained model as built (longer T: 'cannot run past max_len')")
    p.add_argument("--no-passkey", dest="passkey", action="store_false", default=None, help="skip passkey")
    p.add_argument("--passkey-train-len", type=int, default=None, help="passkey training length (default 512)")
    p.add_argument("--passkey-steps", type=int, default=None, help="passkey training steps (default 1000)")
    p.add_argument("--passkey-lengths", default=None, help="passkey test lengths (default 1024,4096,16384,65536)")
    p.add_argument("--passkey-depths", default=None, help="key depths in [0, 1] (default 0,0.25,0.5,0.75,1)")
    p.add_argument("--passkey-samples", type=int, default=None, help="sequences per (T, depth) (default 10)")
    p.add_argument("--passkey-filler", default=None, choices=("random", "sentence"))
    p.add_argument("--point-budget-s", type=float, default=None,
                   help="skip a point (and longer ones) predicted to take longer (default 300)")


def _recall(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mixers", default=None,
                   help="comma-separated mixers, each trained as a 2-layer LM (default: every mixer with a causal "
                        "form; bidirectional-only ones are skipped and listed)")
    p.add_argument("--hybrids", default=None,
                   help="';'-separated 2-layer specs (default summation,attention;spectral,local_attention; '' none)")
    p.add_argument("--d-models", default=None, help="widths (default 64,128; --d-model D runs one)")
    p.add_argument("--sizes", default=None, help="T x kv list (default 64x4,128x8,256x16,256x4,256x8,256x32,256x64)")
    p.add_argument("--mlp", default=None, choices=("on", "off", "both"), help="MLP in each block (default off: Zoology's Identity state mixer)")
    p.add_argument("--lrs", default=None, help="learning rates, best reported (default 3e-3,1e-2,2e-2)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per point (default 3)")
    p.add_argument("--cut", default=None, choices=("none", "seeds", "sizes"),
                   help="seeds: all seeds only at (128, 8), 1 elsewhere; sizes: also only 64x4,128x8,256x16")
    p.add_argument("--vocab-size", type=int, default=None, help="vocabulary V (default 256; Zoology uses 8192)")
    p.add_argument("--power-a", type=float, default=None, help="power law of the query slots (default 0.01)")
    p.add_argument("--random-filler", dest="random_filler", action="store_const", const=True, default=None,
                   help="random filler tokens between the queries (default: filler id 0)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default 64)")
    p.add_argument("--max-steps", type=int, default=None, help="training steps per run at most (default 3000)")
    p.add_argument("--eval-every", type=int, default=None, help="steps between validations (default 250)")
    p.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (default 200)")
    p.add_argument("--schedule", default=None, choices=("cosine", "constant"), help="after warm-up (default constant)")
    p.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (default 0)")
    p.add_argument("--beta2", type=float, default=None, help="AdamW beta2 (default 0.98)")
    p.add_argument("--grad-clip", type=float, default=None, help="gradient norm clip, 0 off (default 1.0)")
    p.add_argument("--n-heads", type=int, default=None, help="heads of the mixers that take them (default 4)")
    p.add_argument("--ffn-mult", type=int, default=None, help="MLP width multiple when on (default 4)")
    p.add_argument("--positional", default=None, choices=POSITIONAL,
                   help="positions (default rotary: rotary in attention-family mixers, none at the embedding)")
    p.add_argument("--target-accuracy", type=float, default=None, help="early stop / steps-to (default 0.99)")
    p.add_argument("--val-examples", type=int, default=None, help="fixed validation examples (default 256)")
    p.add_argument("--test-examples", type=int, default=None, help="fixed test examples (default 1000)")
    p.add_argument("--report-only", action="store_true", default=None,
                   help="tabulate the finished runs of --out's resume file and train nothing")
    p.add_argument("--check", action="store_true", default=None,
                   help="harness check only: attention, d=64, T=128, kv=8, one seed")


#: sub-command -> (help, default output folder, its own options)
COMMANDS = {
    "ops": ("latency and memory of every mixer vs length, against attention and floors", "results/ops", _ops),
    "decode": ("per-token latency and memory of LanguageModel.generate vs position", "results/decode", _decode),
    "train": ("end-to-end training tokens/s of same-size LMs vs length", "results/train", _train),
    "long": ("length extrapolation, passkey retrieval and cost of causal LMs at long context", "results/long", _long),
    "recall": ("multi-query associative recall (MQAR) of every causal mixer vs state size; resumable",
               "results/recall", _recall),
}


def register(subparsers) -> None:
    """Add ``linmix bench {ops,decode,train}`` to the ``linmix`` parser."""
    bench = subparsers.add_parser("bench", help="benchmarks: operator scaling, decoding, training speed",
                                  description="Benchmarks. Each writes CSV, JSON, markdown, PNGs and a README "
                                              "with the command, machine and config into --out, and checks "
                                              "the targets of linmix/bench/targets.toml.")
    sub = bench.add_subparsers(dest="bench_command", metavar="BENCH")
    sub.required = True
    for name, (help_text, out, own) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        own(p)
        _common(p, out)
