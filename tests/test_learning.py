"""A real learning check: a tiny LM trained on Tiny Shakespeare must beat the unigram entropy by a wide margin."""
from __future__ import annotations

import math
import time

import pytest
import torch

import linmix


def unigram_entropy(ids: torch.Tensor, vocab: int) -> float:
    p = torch.bincount(ids, minlength=vocab).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


@pytest.mark.slow
@pytest.mark.parametrize("layers", ["summation*2,attention", "summation*2"])
def test_tiny_char_lm_learns_shakespeare(data_dir, layers):
    text = (data_dir / "tinyshakespeare" / "train.txt").read_text()[:300_000]
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([lookup[c] for c in text])
    split = int(0.9 * len(ids))
    train, val = ids[:split], ids[split:]
    h_unigram = unigram_entropy(train, len(chars))

    torch.manual_seed(0)
    block, batch = 64, 32
    lm = linmix.LanguageModel(len(chars), d_model=64, layers=layers, max_len=block, n_heads=4)
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)

    def batch_of(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(data) - block - 1, (batch,), generator=gen)
        window = torch.stack([data[s : s + block + 1] for s in starts.tolist()])
        return window[:, :-1], window[:, 1:]

    t0 = time.perf_counter()
    for _ in range(150):
        x, y = batch_of(train)
        loss = torch.nn.functional.cross_entropy(lm(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
    lm.eval()
    with torch.no_grad():
        losses = [torch.nn.functional.cross_entropy(lm(x).flatten(0, 1), y.flatten()).item()
                  for x, y in (batch_of(val) for _ in range(8))]
    val_loss = sum(losses) / len(losses)
    print(f"{layers}: unigram {h_unigram:.3f} nats, val {val_loss:.3f} nats, {time.perf_counter() - t0:.1f}s")
    assert math.isfinite(val_loss)
    assert val_loss < h_unigram - 0.5, f"val loss {val_loss:.3f} is not well below unigram {h_unigram:.3f}"
