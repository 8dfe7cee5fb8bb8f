"""Fixtures for the distillation tests: a tiny corpus and a tiny `linmix train lm` run of it."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from linmix.cli import main


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread (the shared ``one_thread`` fixture)."""


def _play(n_chars: int, seed: int) -> str:
    rng = random.Random(seed)
    words = "to be or not the question whether tis nobler mind suffer slings arrows fortune".split()
    text = []
    while sum(map(len, text)) < n_chars:
        text.append(f"{rng.choice(['HAMLET', 'OPHELIA'])}:\n" + " ".join(rng.choices(words, k=rng.randint(3, 9))) + ".\n\n")
    return "".join(text)


@pytest.fixture(scope="session")
def distill_data(tmp_path_factory) -> Path:
    """A data root with ``tinyshakespeare/train.txt`` and ``valid.txt``."""
    root = tmp_path_factory.mktemp("distill-data")
    (root / "tinyshakespeare").mkdir()
    (root / "tinyshakespeare" / "train.txt").write_text(_play(6_000, 1))
    (root / "tinyshakespeare" / "valid.txt").write_text(_play(1_500, 2))
    return root


@pytest.fixture(scope="session")
def tiny_run(distill_data, tmp_path_factory) -> Path:
    """The run folder of a two-layer attention LM trained for a few steps by `linmix train lm`."""
    out = tmp_path_factory.mktemp("distill-runs") / "attn"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["train", "lm", "--data-dir", str(distill_data), "--out", str(out), "--layers", "attention*2",
                     "--d-model", "16", "--n-heads", "2", "--block-size", "16", "--batch-size", "4", "--steps", "4",
                     "--warmup", "1", "--eval-every", "4", "--quiet"])
    finally:
        torch.set_num_threads(before)
    assert code == 0
    return out
