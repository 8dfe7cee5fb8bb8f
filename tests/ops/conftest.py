"""Kernel tests run on tiny tensors: one thread is several times faster here than two fighting a busy machine."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _single_threaded_kernels():
    previous, _ = torch.get_num_threads(), torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
