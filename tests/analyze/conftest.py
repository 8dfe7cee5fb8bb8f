"""Fixtures for the analysis tests: a tiny corpus in the tinyshakespeare layout and two tiny trained LMs."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from linmix.cli import main

#: two models of different depth, so the per-layer outputs must follow each one's own layer count
RUNS = {"A": "summation,attention", "B": "attention*3"}


def tiny_play(n_chars: int, seed: int) -> str:
    """Speaker lines of random words from a small vocabulary: enough structure for a few training steps."""
    rng = random.Random(seed)
    words = "the king queen love night day sword crown heart blood fair sweet lord lady speak come".split()
    lines: list[str] = []
    while sum(map(len, lines)) < n_chars:
        lines.append(f"{rng.choice(['ROMEO', 'JULIET', 'KING'])}:\n"
                     + " ".join(rng.choice(words) for _ in range(rng.randint(4, 10))).capitalize() + ".\n\n")
    return "".join(lines)


@pytest.fixture(scope="session")
def analyze_data(tmp_path_factory) -> Path:
    """A data root holding ``tinyshakespeare/train.txt`` and ``valid.txt``."""
    root = tmp_path_factory.mktemp("analyze-data")
    folder = root / "tinyshakespeare"
    folder.mkdir()
    (folder / "train.txt").write_text(tiny_play(6_000, 1))
    (folder / "valid.txt").write_text(tiny_play(1_500, 2))
    return root


@pytest.fixture(scope="session")
def tiny_runs(analyze_data, tmp_path_factory) -> dict[str, Path]:
    """Run folders of two tiny LMs trained for a few steps with ``linmix train lm``."""
    runs = tmp_path_factory.mktemp("analyze-runs")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, layers in RUNS.items():
            code = main(["train", "lm", "--data-dir", str(analyze_data), "--out", str(runs / name),
                         "--layers", layers, "--d-model", "16", "--n-heads", "2", "--block-size", "16",
                         "--batch-size", "4", "--steps", "4", "--warmup", "1", "--eval-every", "4", "--quiet"])
            assert code == 0
    finally:
        torch.set_num_threads(before)
    return {name: runs / name for name in RUNS}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread (the shared ``one_thread`` fixture)."""
