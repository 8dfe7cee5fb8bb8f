"""Geometry of token representations: pure functions of ``[N, D]`` tensors (or a stack of them per layer).

* :func:`pair_cosines` / :func:`cosine_histogram` — how aligned token vectors are: cosine similarity of
  seeded random pairs of distinct tokens; a cloud collapsed into one direction (anisotropy) sits near 1.
* :func:`participation_ratio` — effective dimensionality, ``(sum lambda)^2 / sum lambda^2`` over the
  eigenvalues of the covariance: ``k`` for an isotropic cloud in ``k`` dimensions, 1 for a line.
* :func:`linear_cka` / :func:`cka_matrix` — linear centred kernel alignment (Kornblith et al. 2019) in
  its feature-space form ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred ``X``, ``Y``
  (same tokens, any widths): 1 for representations equal up to rotation and isotropic scaling.
* :func:`shared_pca` — one 2-D projection fitted to the tokens of every layer together, so a token's
  path through the layers can be drawn in a single plane.

Everything is computed in float64 and returned as plain tensors or Python numbers.
"""
from __future__ import annotations

import torch

#: the range of a cosine similarity, the histogram's support
COSINE_RANGE = (-1.0, 1.0)


def _matrix(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[0] < 2:
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a [N, D] tensor with N >= 2 token vectors, got {shape}")
    return x.detach().to(torch.float64)


def _centred(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=0, keepdim=True)


def pair_cosines(x: torch.Tensor, pairs: int = 20_000, seed: int = 0) -> torch.Tensor:
    """Cosine similarities of ``pairs`` random pairs of distinct rows of ``x`` (drawn with ``seed``; all
    ``N (N - 1) / 2`` pairs when there are no more than that). A zero vector has cosine 0 with anything."""
    x = _matrix(x)
    n = x.shape[0]
    if n * (n - 1) // 2 <= pairs:
        i, j = torch.triu_indices(n, n, offset=1)
    else:
        g = torch.Generator().manual_seed(seed)
        i = torch.randint(0, n, (pairs,), generator=g)
        j = (i + torch.randint(1, n, (pairs,), generator=g)) % n  # never equal to i
    unit = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (unit[i] * unit[j]).sum(dim=1).clamp(*COSINE_RANGE)


def cosine_histogram(x: torch.Tensor, bins: int = 41, pairs: int = 20_000,
                     seed: int = 0) -> dict[str, list[float] | float]:
    """Histogram of :func:`pair_cosines` over ``[-1, 1]`` as a density (``counts`` integrate to 1), with
    its bin ``edges`` and the similarities' ``mean`` and ``std``. The default, odd, bin count puts one
    bin's centre at 0, where orthogonal (unrelated) vectors fall."""
    if bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    cos = pair_cosines(x, pairs, seed)
    counts = torch.histc(cos, bins=bins, min=COSINE_RANGE[0], max=COSINE_RANGE[1])
    width = (COSINE_RANGE[1] - COSINE_RANGE[0]) / bins
    edges = torch.linspace(COSINE_RANGE[0], COSINE_RANGE[1], bins + 1, dtype=torch.float64)
    return {"counts": (counts / (counts.sum() * width)).tolist(), "edges": edges.tolist(),
            "mean": float(cos.mean()), "std": float(cos.std(unbiased=False)), "pairs": int(cos.numel())}


def covariance_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of the covariance of the rows of ``x``, largest first (from the singular values of the
    centred matrix, so a wide ``D > N`` matrix costs no ``D x D`` covariance)."""
    x = _centred(_matrix(x))
    return torch.linalg.svdvals(x) ** 2 / (x.shape[0] - 1)


def participation_ratio(x: torch.Tensor) -> float:
    """``(sum lambda)^2 / sum lambda^2`` of :func:`covariance_spectrum`: between 1 and ``min(N - 1, D)``.
    A cloud with no spread at all has ratio 0."""
    lam = covariance_spectrum(x)
    total = float(lam.sum())
    return total * total / float((lam ** 2).sum()) if total > 0 else 0.0


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same ``N`` tokens (rows), widths may differ; 0 when
    either has no spread."""
    x, y = _centred(_matrix(x, "x")), _centred(_matrix(y, "y"))
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same tokens (rows), got {x.shape[0]} and {y.shape[0]}")
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norms = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norms) if float(norms) > 0 else 0.0


def cka_matrix(states: torch.Tensor | list[torch.Tensor]) -> list[list[float]]:
    """Linear CKA between every pair of layers of ``states`` (``[L, N, D]`` or a list of ``[N, D_l]``);
    symmetric, computed once per pair."""
    layers = list(states)
    n = len(layers)
    out = [[1.0] * n for _ in range(n)]
    for a in range(n):
        for b in range(a, n):
            out[a][b] = out[b][a] = linear_cka(layers[a], layers[b])
    return out


def shared_pca(states: torch.Tensor, components: int = 2) -> dict[str, torch.Tensor]:
    """Project every layer's tokens (``states: [L, N, D]``) onto the top principal directions of all
    ``L * N`` vectors together: ``points`` ``[L, N, components]``, ``mean`` ``[D]``, ``directions``
    ``[components, D]`` (each with its largest entry positive, so the result is deterministic) and
    ``explained`` (the fraction of the total variance on each direction)."""
    if not isinstance(states, torch.Tensor) or states.dim() != 3:
        raise ValueError("states must be a [L, N, D] tensor")
    layers, n, d = states.shape
    if not 1 <= components <= min(d, layers * n):
        raise ValueError(f"components must lie in [1, {min(d, layers * n)}], got {components}")
    flat = _matrix(states.reshape(layers * n, d), "states")
    mean = flat.mean(dim=0)
    _, s, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    directions = vh[:components]
    signs = torch.sign(directions.gather(1, directions.abs().argmax(dim=1, keepdim=True)))
    directions = directions * torch.where(signs == 0, torch.ones_like(signs), signs)
    variance = s ** 2
    explained = variance[:components] / variance.sum().clamp_min(1e-300)
    points = ((flat - mean) @ directions.T).reshape(layers, n, components)
    return {"points": points, "mean": mean, "directions": directions, "explained": explained}
