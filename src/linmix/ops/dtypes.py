"""The one rule for the precision that sums, scans and FFTs accumulate in.

bf16/fp16 running sums over thousands of tokens lose their digits, and half-precision FFTs are unavailable on
CPU and inaccurate elsewhere, so every kernel in :mod:`linmix.ops` computes in at least float32 and casts its
result back to the input dtype; float64 input stays float64 (the tests' reference precision).
"""
from __future__ import annotations

import torch


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype to accumulate ``dtype`` values in: float32 for bf16/fp16/float32, float64 for float64."""
    return torch.promote_types(dtype, torch.float32)
