"""Both stages resume exactly: k steps, then the rest from out/state, equals one uninterrupted run."""
from __future__ import annotations

import json

import pytest
import torch

from distill_helpers import converted, ids_batch, tiny_lm
from linmix.distill import attention_transfer, recover
from linmix.distill.stage import STATE


def batches(step: int) -> torch.Tensor:
    return ids_batch(seed=100 + step)


def transfer(out, steps: int, **kw):
    _, model = converted(tiny_lm())
    final = attention_transfer(model, batches, steps, lr=3e-3, out=out, log_every=2, save_every=3, progress=False,
                               **kw)
    return model, final


def recovery(out, steps: int, data=None, **kw):
    """Recovery with everything that needs state to resume: dropout (RNG), LoRA, KL to the kept teachers."""
    torch.manual_seed(5)
    _, model = converted(tiny_lm(dropout=0.1))
    final = recover(model, data if data is not None else batches, steps, lr=3e-3, teacher="kept", kl_weight=0.5,
                    lora_rank=2, out=out, log_every=2, save_every=3, progress=False, **kw)
    return model, final


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("stage", [transfer, recovery])
def test_interrupted_and_resumed_equals_uninterrupted(stage, tmp_path):
    full, full_final = stage(tmp_path / "full", 8)
    part, _ = stage(tmp_path / "part", 5)
    with pytest.raises(AssertionError):
        assert_same_weights(part, full)
    resumed, resumed_final = stage(tmp_path / "part", 8)
    assert_same_weights(resumed, full)
    assert resumed_final == full_final
    name = "transfer" if stage is transfer else "recovery"
    log = (tmp_path / "part" / f"{name}.jsonl").read_text()
    assert log == (tmp_path / "full" / f"{name}.jsonl").read_text()  # no step logged twice
    assert [json.loads(line)["step"] for line in log.splitlines()] == [0, 2, 4, 6, 8]
    again, again_final = stage(tmp_path / "part", 8)  # finished: loads the final state, takes no step
    assert_same_weights(again, full)
    assert again_final == full_final


def test_an_iterable_of_batches_resumes_by_skipping_what_was_used(tmp_path):
    full, _ = recovery(tmp_path / "full", 6, data=(batches(s) for s in range(6)))
    recovery(tmp_path / "part", 4, data=(batches(s) for s in range(4)))
    resumed, _ = recovery(tmp_path / "part", 6, data=(batches(s) for s in range(6)))
    assert_same_weights(resumed, full)
    with pytest.raises(ValueError, match="batches ran out after 2 of the 4"):
        recovery(tmp_path / "short", 4, data=iter([batches(0), batches(1)]))


def test_a_state_from_other_settings_is_refused(tmp_path):
    transfer(tmp_path, 3)
    assert (tmp_path / STATE).is_dir()
    with pytest.raises(ValueError, match="was written with loss='mse', this run has loss='nl2'"):
        transfer(tmp_path, 6, loss="nl2")
    with pytest.raises(ValueError, match="is at step 3, past steps=2"):
        transfer(tmp_path, 2)
    with pytest.raises(ValueError, match="holds the state of stage 'transfer', not 'recovery'"):
        recovery(tmp_path, 6)
