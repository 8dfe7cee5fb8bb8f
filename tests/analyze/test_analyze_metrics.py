"""The representation metrics on inputs whose answers are known in closed form."""
from __future__ import annotations

import math

import pytest
import torch

from linmix.analyze.collect import sample_windows
from linmix.analyze.metrics import (cka_matrix, cosine_histogram, covariance_spectrum, linear_cka, pair_cosines,
                                    participation_ratio, shared_pca)


def orthonormal(d: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def gaussian(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------------------- participation ratio
@pytest.mark.parametrize("k", [1, 4, 12])
def test_participation_ratio_of_an_isotropic_gaussian_is_its_dimension(k):
    d, n = 32, 8000
    cloud = gaussian(n, k, 1) @ orthonormal(d)[:k] + 5.0  # k-dim isotropic, rotated into D = 32, shifted
    assert participation_ratio(cloud) == pytest.approx(k, rel=0.03)


def test_participation_ratio_of_a_rank_one_cloud_is_one():
    direction = torch.randn(24, dtype=torch.float64)
    cloud = torch.linspace(-3, 7, 500, dtype=torch.float64)[:, None] * direction + torch.randn(24)
    assert participation_ratio(cloud) == pytest.approx(1.0, abs=1e-9)


def test_participation_ratio_counts_unequal_variances():
    cloud = gaussian(20_000, 2, 3) * torch.tensor([1.0, 2.0], dtype=torch.float64)  # variances 1 and 4
    assert participation_ratio(cloud) == pytest.approx(25 / 17, rel=0.02)


def test_covariance_spectrum_matches_the_covariance_eigenvalues_and_a_point_has_ratio_zero():
    x = gaussian(50, 6, 4)
    expected = torch.linalg.eigvalsh(torch.cov(x.T)).flip(0)
    torch.testing.assert_close(covariance_spectrum(x), expected)
    assert participation_ratio(torch.ones(10, 4)) == 0.0
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        participation_ratio(torch.ones(5))


# ----------------------------------------------------------------------------------------- CKA
def test_cka_of_a_representation_with_itself_is_one():
    x = gaussian(300, 20, 5)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_rotation_isotropic_scaling_and_shift():
    x = gaussian(300, 20, 6)
    assert linear_cka(x, 3.7 * x @ orthonormal(20, 7) + 11.0) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, 0.01 * x) == pytest.approx(1.0, abs=1e-10)


def test_cka_is_not_invariant_to_anisotropic_scaling():
    x = gaussian(500, 8, 8)
    stretched = x * torch.tensor([30.0, 1, 1, 1, 1, 1, 1, 1], dtype=torch.float64)
    assert linear_cka(x, stretched) < 0.6


def test_cka_of_independent_noise_is_small():
    assert linear_cka(gaussian(2000, 16, 9), gaussian(2000, 24, 10)) < 0.05


def test_cka_equals_the_centred_gram_matrix_form():
    x = gaussian(60, 5, 11)
    y = x @ gaussian(5, 9, 12) + 0.5 * gaussian(60, 9, 13)  # related to x, but neither equal nor independent
    h = torch.eye(60, dtype=torch.float64) - 1 / 60
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    expected = float((k * l).sum() / (k.norm() * l.norm()))
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-10)


def test_cka_matrix_is_symmetric_with_ones_on_the_diagonal():
    x = gaussian(100, 6, 13)
    layers = torch.stack([x, x @ orthonormal(6, 14), gaussian(100, 6, 15)])
    m = torch.tensor(cka_matrix(layers))
    torch.testing.assert_close(m, m.T)
    torch.testing.assert_close(m.diagonal(), torch.ones(3))
    assert m[0, 1] == pytest.approx(1.0) and m[0, 2] < 0.2
    with pytest.raises(ValueError, match="same tokens"):
        linear_cka(x, x[:50])


# ----------------------------------------------------------------------------------------- cosine similarity
def test_cosine_histogram_of_orthogonal_vectors_is_centred_at_zero():
    hist = cosine_histogram(torch.eye(64))
    assert hist["mean"] == 0.0 and hist["std"] == 0.0 and hist["pairs"] == 64 * 63 // 2
    counts, edges = torch.tensor(hist["counts"]), torch.tensor(hist["edges"])
    assert float((counts * (edges[1:] - edges[:-1])).sum()) == pytest.approx(1.0)  # a density
    peak = int(counts.argmax())
    assert counts.count_nonzero() == 1 and float(edges[peak] + edges[peak + 1]) / 2 == pytest.approx(0.0, abs=1e-12)


def test_sampled_pairs_are_distinct_tokens_and_seeded():
    unit = orthonormal(200, 16)  # 200 orthonormal rows: a pair of a row with itself would give cosine 1
    cos = pair_cosines(unit, pairs=1000, seed=3)
    assert cos.numel() == 1000 and float(cos.abs().max()) < 1e-9
    x = gaussian(200, 10, 17)
    torch.testing.assert_close(pair_cosines(x, 500, seed=1), pair_cosines(x, 500, seed=1))
    assert not torch.equal(pair_cosines(x, 500, seed=1), pair_cosines(x, 500, seed=2))


def test_cosine_of_random_high_dimensional_vectors_concentrates_at_zero_and_of_one_direction_at_one():
    hist = cosine_histogram(gaussian(400, 256, 18))
    assert abs(hist["mean"]) < 0.01 and hist["std"] == pytest.approx(1 / math.sqrt(256), rel=0.1)
    same = cosine_histogram((torch.rand(30, 1) + 0.5) * torch.randn(8))  # positive multiples of one vector
    assert same["mean"] == pytest.approx(1.0) and same["counts"][-1] > 0 and sum(same["counts"][:-1]) == 0


# ----------------------------------------------------------------------------------------- PCA
def test_shared_pca_recovers_a_plane_and_is_shared_by_the_layers():
    basis = orthonormal(10, 19)[:2]
    flat = gaussian(3 * 40, 2, 20) * torch.tensor([3.0, 1.0], dtype=torch.float64)
    states = (flat @ basis + 2.0).reshape(3, 40, 10)
    pca = shared_pca(states)
    assert pca["points"].shape == (3, 40, 2)
    assert float(pca["explained"].sum()) == pytest.approx(1.0)
    assert pca["explained"][0] > pca["explained"][1]
    flat_states = states.reshape(120, 10)
    dist_in, dist_2d = torch.cdist(flat_states, flat_states), torch.cdist(*[pca["points"].reshape(120, 2)] * 2)
    torch.testing.assert_close(dist_2d, dist_in, atol=1e-6, rtol=1e-9)  # nothing lies off the plane: distances are kept
    torch.testing.assert_close(shared_pca(states)["points"], pca["points"])  # deterministic signs
    with pytest.raises(ValueError, match="components"):
        shared_pca(states, components=11)


# ----------------------------------------------------------------------------------------- the token sample
@pytest.mark.parametrize("n_ids, window, tokens", [(1000, 16, 64), (1000, 64, 40), (30, 64, 2048), (5000, 32, 100)])
def test_sample_windows_is_bounded_aligned_distinct_and_seeded(n_ids, window, tokens):
    used, starts = sample_windows(n_ids, window, tokens, seed=4)
    assert 1 <= len(starts) and len(starts) * used <= tokens and used <= min(window, n_ids)
    assert all(s % used == 0 and s + used <= n_ids for s in starts) and len(set(starts)) == len(starts)
    assert sample_windows(n_ids, window, tokens, seed=4) == (used, starts)
    with pytest.raises(ValueError, match="--tokens"):
        sample_windows(n_ids, window, 1, seed=0)
