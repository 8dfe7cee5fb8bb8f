"""Linear attention specifics: chunk edges, the per-position recurrence, the constant-size state, errors.

The contract (shapes, fast == reference, causality, padding, streaming, errors) runs in test_registry.py.
"""
from __future__ import annotations

import pytest
import torch

from linmix.mixers import build_mixer
from linmix.mixers.linear_attention import LinearAttention, LinearAttentionState

from .mixer_contract import assert_fast_equals_reference

D, H = 8, 2


def make(causal: bool, chunk: int = 4) -> LinearAttention:
    torch.manual_seed(0)
    return build_mixer("linear_attention", d_model=D, max_len=16, causal=causal, n_heads=H, chunk=chunk).double()


def loop_reference(m: LinearAttention, x: torch.Tensor) -> torch.Tensor:
    """Causal form as a per-position loop over the running sums (no padding)."""
    phq, phk, v = m.features(x)
    S = torch.zeros(*phq.shape[:2], m.head_dim, m.head_dim, dtype=phq.dtype)
    z = torch.zeros(*phq.shape[:2], m.head_dim, dtype=phq.dtype)
    ys = []
    for t in range(x.shape[1]):
        S = S + phk[:, :, t, :, None] * v[:, :, t, None, :]
        z = z + phk[:, :, t]
        num = torch.einsum("bhd,bhde->bhe", phq[:, :, t], S)
        ys.append(num / ((phq[:, :, t] * z).sum(-1, keepdim=True) + m.eps))
    return m.merge(torch.stack(ys, 2), x.dtype)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("chunk,T", [(4, 8), (4, 7), (16, 5), (1, 4)])
def test_chunked_form_matches_the_reference_at_chunk_edges(causal: bool, chunk: int, T: int) -> None:
    """T a multiple of the chunk or not, a chunk longer than T, chunk 1."""
    assert_fast_equals_reference(make(causal, chunk), T)


def test_causal_matches_the_per_position_recurrence() -> None:
    m = make(True, chunk=3)
    x = torch.randn(2, 10, D, dtype=torch.float64)
    torch.testing.assert_close(m(x), loop_reference(m, x), atol=1e-10, rtol=1e-10)


def test_state_size_is_constant_in_the_position() -> None:
    m = make(True)
    with torch.no_grad():
        _, state = m.prefill(torch.randn(2, 3, D, dtype=torch.float64))
        size = state.nbytes()
        for _ in range(5):
            _, state = m.step(torch.randn(2, D, dtype=torch.float64), state)
    assert isinstance(state, LinearAttentionState) and state.nbytes() == size
    assert state.S.shape == (2, H, D // H, D // H) and state.z.shape == (2, H, D // H)


def test_option_errors() -> None:
    with pytest.raises(ValueError, match="divisible by n_heads"):
        build_mixer("linear_attention", d_model=10, max_len=8, causal=True, n_heads=4)
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        build_mixer("linear_attention", d_model=8, max_len=8, causal=True, chunk=0)
    with pytest.raises(ValueError, match="eps must be > 0"):
        build_mixer("linear_attention", d_model=8, max_len=8, causal=True, eps=0.0)
