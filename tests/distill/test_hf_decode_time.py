"""Decode timing of linmix.distill.hf_decode_time on tiny random GPT-2 models (no download): per-step times,
the state bytes after the decode, and lengths past GPT-2's position table (or a mixer's max_len) skipped with
the reason."""
from __future__ import annotations

import math

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="decode timing drives transformers models")
if int(transformers.__version__.split(".")[0]) < 5:
    pytest.skip("linmix.convert follows the transformers 5 attention interfaces", allow_module_level=True)

import linmix  # noqa: E402
from linmix.distill.hf_decode_time import RECOMPUTE_MAX, measure, recompute, skip_reason  # noqa: E402

N = 3


def tiny_gpt2(n_positions: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=n_positions,
                                      bos_token_id=0, eos_token_id=0)).eval()


class Bar:
    def __init__(self) -> None:
        self.updates, self.labels = 0, []

    def set_postfix_str(self, text: str) -> None:
        self.labels.append(text)

    def update(self) -> None:
        self.updates += 1


def finite_positive(run: dict) -> bool:
    return all(math.isfinite(run[k]) and run[k] > 0 for k in ("prefill_s", "token_s"))


def test_gpt2_teacher_and_streamed_variant_are_timed_and_long_prompts_skipped():
    torch.manual_seed(0)
    teacher = tiny_gpt2(n_positions=16)
    valid = torch.randint(1, 50, (200,))
    bar = Bar()
    entry = measure(teacher, "teacher", False, valid, [8, 16], N, bar)
    short, long = entry["runs"]
    assert finite_positive(short) and len(short["token_s_each"]) == N - 1
    assert short["state_bytes"] == 2 * 2 * 32 * (8 + N - 1) * 4  # layers x (keys, values) x n_embd x tokens x float32
    assert long == {"length": 16, "skipped": "16 + 3 tokens need 18 positions; the model has n_positions=16"}
    assert bar.updates == 2 and bar.labels == ["teacher, 8 tokens", "teacher, 16 tokens"]

    model, _ = linmix.convert(tiny_gpt2(n_positions=16), mixer="summation")
    entry = measure(model, "summation", True, valid, [4, 8, 16], N, bar)
    assert entry["method"] == "generate_streaming" and entry["threads"] == torch.get_num_threads()
    runs = entry["runs"]
    assert all(finite_positive(r) for r in runs[:2]) and "skipped" in runs[2]
    assert runs[0]["state_bytes"] == runs[1]["state_bytes"] > 0  # the summation state does not grow
    ref = recompute(model, "summation", valid, [8, 4], N)
    assert ref["length"] == 4 and finite_positive(ref) and ref["state_bytes"] == 0
    assert "above" in recompute(model, "summation", valid, [RECOMPUTE_MAX + 1], N)["skipped"]
    assert skip_reason(model, 300, N, valid.numel()) == "the validation split has 200 tokens, fewer than 300"
    bounded, _ = linmix.convert(tiny_gpt2(n_positions=64), mixer="summation", max_len=8)  # a learned position table
    assert skip_reason(bounded, 6, N, valid.numel()) is None
    assert skip_reason(bounded, 8, N, valid.numel()) == ("8 + 3 tokens need 10 positions; summation is defined only "
                                                         "up to max_len=8")
