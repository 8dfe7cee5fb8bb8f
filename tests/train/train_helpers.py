"""Helpers shared by the training tests (a unique module name, importable from every test file here)."""
from __future__ import annotations

import os
import random
import sys

WORDS = ("the king and queen of love night day sword crown heart blood fair sweet good lord lady "
         "speak come go now thou thee thy what why how when my your his her it is was be not").split()
NAMES = ("ROMEO", "JULIET", "KING", "QUEEN", "FRIAR", "NURSE")


def fake_play(n_chars: int, seed: int) -> str:
    """Pseudo-Shakespeare: speaker lines and short sentences from a small vocabulary."""
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < n_chars:
        line = f"{rng.choice(NAMES)}:\n" + " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize()
        line += rng.choice(".,!?") + "\n\n"
        out.append(line)
        size += len(line)
    return "".join(out)


#: a tiny LM configuration: ~30k parameters, a few ms per step
TINY_LM = ["--d-model", "32", "--n-heads", "2", "--layers", "summation,attention", "--block-size", "32",
           "--batch-size", "8", "--warmup", "5", "--quiet"]


PYTHON = sys.executable
#: environment of linmix subprocesses: one thread each (tiny models; the test machine may be busy)
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
