"""LR schedules: linear warmup, then cosine decay to the floor, or constant."""
from __future__ import annotations

import math

import pytest

from linmix.train.schedules import LRSchedule, warmup_constant, warmup_cosine


def test_warmup_then_cosine_values():
    s = LRSchedule("cosine", base_lr=1.0, warmup=10, total_steps=110, min_lr_ratio=0.1)
    assert [s(i) for i in range(10)] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert s(10) == pytest.approx(1.0)
    # halfway through the decay: floor + half the range
    assert s(10 + 99 // 2) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 49 / 99)))
    assert s(109) == pytest.approx(0.1)
    assert s(500) == pytest.approx(0.1)  # past the end: stays at the floor
    decay = [s(i) for i in range(10, 110)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert warmup_cosine(37, 1.0, 10, 110, 0.1) == s(37)


def test_constant_with_warmup_and_without():
    s = LRSchedule("constant", base_lr=3e-3, warmup=4, total_steps=100)
    assert [s(i) for i in range(6)] == pytest.approx([7.5e-4, 1.5e-3, 2.25e-3, 3e-3, 3e-3, 3e-3])
    assert LRSchedule("constant", 0.5, 0, 10)(0) == 0.5
    assert warmup_constant(99, 0.5, 0) == 0.5


def test_cosine_without_warmup_starts_at_base_and_single_step():
    s = LRSchedule("cosine", 2.0, 0, 50, 0.0)
    assert s(0) == pytest.approx(2.0) and s(49) == pytest.approx(0.0, abs=1e-12)
    assert LRSchedule("cosine", 2.0, 0, 1)(0) == pytest.approx(2.0 * 0.1)


@pytest.mark.parametrize("kwargs", [dict(kind="linear"), dict(base_lr=0.0), dict(warmup=-1), dict(total_steps=0)])
def test_bad_schedules_are_value_errors(kwargs):
    args = dict(kind="cosine", base_lr=1.0, warmup=1, total_steps=10) | kwargs
    with pytest.raises(ValueError):
        LRSchedule(**args)
