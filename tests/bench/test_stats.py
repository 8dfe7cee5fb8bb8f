"""Slopes, the upper half of a range and crossovers, on numbers whose answer is known."""
from __future__ import annotations

import math

import pytest

from linmix.bench.stats import crossover, loglog_slope, series, upper_half, upper_slope

XS = [256, 512, 1024, 2048]


@pytest.mark.parametrize("ys, slope", [([3 * x for x in XS], 1.0), ([x * x / 7 for x in XS], 2.0),
                                       ([5.0] * 4, 0.0)])
def test_loglog_slope_recovers_powers(ys, slope):
    assert loglog_slope(XS, ys) == pytest.approx(slope, abs=1e-12)


@pytest.mark.parametrize("xs, ys", [([256], [1.0]), ([256, 512], [None, 2.0]), ([256, 256], [1.0, 2.0])])
def test_loglog_slope_needs_two_distinct_positive_points(xs, ys):
    assert loglog_slope(xs, ys) is None


@pytest.mark.parametrize("lengths, upper", [([256 * 2**i for i in range(7)], [2048, 4096, 8192, 16384]),
                                            ([16, 32], [16, 32]), ([], [])])
def test_upper_half(lengths, upper):
    assert upper_half(lengths) == upper


def test_upper_slope_ignores_the_lower_half():
    points = {256: 100.0, 512: 1.0, 1024: 2.0, 2048: 4.0}  # overhead-dominated first point
    assert upper_slope(points, list(points)) == pytest.approx(1.0)
    rows = [{"case": "a", "T": 1, "v": 2}, {"case": "b", "T": 1, "v": 3}]
    assert series(rows, "case", "b", "T", "v") == {1: 3}


def test_crossover_interpolates_on_the_log_log_curve():
    attn = [1.0, 2.0, 4.0, 8.0]
    out = crossover(XS, [4.0, 4.0, 2.0, 1.0], attn)  # speedup 0.25, 0.5, 2, 8: crosses between 512 and 1024
    assert math.isclose(out["T"], 2 ** 9.5, rel_tol=1e-9)  # log speedup -log 2 .. +log 2: halfway
    assert crossover(XS, [0.5] * 4, attn)["text"].startswith("< 256")
    assert crossover(XS, [100.0] * 4, attn)["T"] is None
    assert crossover(XS, [None] * 4, attn)["text"] == "n/a"
