"""LanguageModel.generate: eval mode during decoding, the caller's mode afterwards, and eos_id."""
from __future__ import annotations

import pytest
import torch

import linmix

V, PROMPT, NEW = 24, 4, 12


@pytest.fixture
def lm() -> linmix.LanguageModel:
    torch.manual_seed(0)
    return linmix.LanguageModel(V, d_model=16, layers="summation,attention", max_len=32, n_heads=2, dropout=0.5)


def test_generate_runs_in_eval_mode_and_restores_train_mode(lm):
    prompt = torch.randint(0, V, (2, PROMPT))
    lm.train()
    modes = []
    stream = lambda token: modes.append([m.training for m in lm.modules()])  # noqa: E731
    first = lm.generate(prompt, NEW, temperature=0, stream=stream)
    assert lm.training and all(m.training for m in lm.modules())
    assert len(modes) == NEW and not any(any(step) for step in modes)  # dropout off at every step
    assert torch.equal(lm.generate(prompt, NEW, temperature=0), first)  # no dropout noise
    lm.eval()
    assert torch.equal(lm.generate(prompt, NEW, temperature=0), first)
    assert not lm.training


@pytest.mark.parametrize("training", [True, False])
def test_the_mode_is_restored_after_errors_and_abandoned_streams(lm, training):
    lm.train(training)
    with pytest.raises(ValueError, match="exceeds max_len"):
        lm.generate(torch.zeros(1, 30, dtype=torch.long), 10)
    assert lm.training is training
    tokens = lm.iter_generate(torch.zeros(1, 2, dtype=torch.long), 5, temperature=0)
    next(tokens)
    assert not lm.training
    tokens.close()  # the caller stops early
    assert lm.training is training


def reference_eos(full: torch.Tensor, eos: int) -> torch.Tensor:
    """What eos_id must give, from a generation without it: eos after a row's first eos, stop when all have."""
    rows, ends = [], []
    for row in full[:, PROMPT:].tolist():
        end = row.index(eos) + 1 if eos in row else len(row)
        rows.append(row[:end] + [eos] * (len(row) - end))
        ends.append(end)
    new = torch.tensor(rows)[:, : max(ends)]
    return torch.cat([full[:, :PROMPT], new], 1)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("pick", ["first_token", "third_token", "never"])
def test_eos_id_stops_early_and_pads_finished_rows(lm, batch, pick):
    lm.eval()
    prompt = torch.randint(0, V, (batch, PROMPT))
    full = lm.generate(prompt, NEW, temperature=0)
    produced = set(full[:, PROMPT:].flatten().tolist())
    eos = {"first_token": int(full[0, PROMPT]), "third_token": int(full[-1, PROMPT + 2]),
           "never": min(set(range(V)) - produced)}[pick]
    seen = []
    out = lm.generate(prompt, NEW, temperature=0, eos_id=eos, stream=seen.append)
    expected = reference_eos(full, eos)
    assert torch.equal(out, expected)
    assert torch.equal(torch.stack(seen, 1), out[:, PROMPT:])  # stream saw the padded tokens too
    if pick == "never":
        assert out.shape[1] == PROMPT + NEW
    if batch == 1 and pick != "never":
        assert out.shape[1] < PROMPT + NEW and out[0, -1] == eos and (out[0, PROMPT:-1] != eos).all()


def test_eos_id_with_sampling_pads_every_finished_row(lm):
    lm.eval()
    prompt = torch.randint(0, V, (4, PROMPT))
    out = lm.generate(prompt, NEW, temperature=2.0, eos_id=3, generator=torch.Generator().manual_seed(1))
    for row in out[:, PROMPT:].tolist():
        if 3 in row:
            assert all(t == 3 for t in row[row.index(3):])


@pytest.mark.parametrize("eos_id", [-1, V, V + 5, 1.5, "1", True])
def test_a_bad_eos_id_is_a_value_error(lm, eos_id):
    with pytest.raises(ValueError, match="eos_id"):
        lm.generate(torch.zeros(1, 2, dtype=torch.long), 3, eos_id=eos_id)
