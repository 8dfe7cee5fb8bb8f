"""Representation analysis of trained models: the figures the summation and aggregation papers drew.

* :mod:`linmix.analyze.collect` — hidden states per layer on a seeded sample of a run's validation tokens.
* :mod:`linmix.analyze.metrics` — pairwise cosine similarity, participation ratio, linear CKA, shared PCA.
* :mod:`linmix.analyze.plots` — the figures, each a PNG with a JSON of its numbers.
* :mod:`linmix.analyze.report` — all of it for one model or several (``linmix analyze``).
"""
from linmix.analyze.metrics import (cka_matrix, cosine_histogram, linear_cka, pair_cosines, participation_ratio,
                                    shared_pca)

__all__ = ["cka_matrix", "cosine_histogram", "linear_cka", "pair_cosines", "participation_ratio", "shared_pca"]
