"""Shared fixtures: deterministic seeds, the data folder, and a tiny-size mixer builder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("LINMIX_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny models gain nothing from more, and a busy machine slows them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real datasets folder from $LINMIX_DATA (CI sets it); tests that need it skip without it."""
    root = os.environ.get("LINMIX_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("LINMIX_DATA is not set to the datasets folder")
    return Path(root)
