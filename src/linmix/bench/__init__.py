"""Benchmarks: operator scaling vs length (``ops``), decoding cost vs position (``decode``) and end-to-end
training throughput (``train``), each against attention, with CSV/JSON/markdown/PNG outputs.

Library entry points (the CLI only parses arguments and calls these)::

    from linmix.bench import OpsConfig, run_ops, write_ops_outputs
    result = run_ops(OpsConfig.quick_preset(mixers=["summation"]))
    write_ops_outputs(result, "results/ops")
"""
from linmix.bench.decode import DecodeConfig, run_decode, write_decode_outputs
from linmix.bench.ops import OpsConfig, parse_lengths, run_ops
from linmix.bench.registry import DECODE_MODELS, TRAIN_MODELS, OpCase, select_cases
from linmix.bench.report import write_ops_outputs
from linmix.bench.train_speed import TrainConfig, run_train, write_train_outputs

__all__ = ["DECODE_MODELS", "TRAIN_MODELS", "DecodeConfig", "OpCase", "OpsConfig", "TrainConfig", "parse_lengths",
           "run_decode", "run_ops", "run_train", "select_cases", "write_decode_outputs", "write_ops_outputs",
           "write_train_outputs"]
