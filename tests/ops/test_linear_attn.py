"""Chunked causal and global linear attention (linmix.ops.linear_attn.chunked) against the [T, T] kernel (naive)."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from ops_helpers import assert_matches_reference

from linmix.ops.linear_attn import chunked_linear_attention, global_linear_attention, linear_attention_reference

EPS = 1e-6


def on_features(kernel):
    """``kernel`` applied to ``phi(q), phi(k), v`` with ``phi = elu + 1``, so gradients reach the raw q and k."""
    def call(q, k, v):
        return kernel(F.elu(q) + 1.0, F.elu(k) + 1.0, v)
    return call


def qkv(T: int, dh: int = 8, dv: int = 8, B: int = 2, H: int = 3):
    return [torch.randn(B, H, T, d, dtype=torch.float64, requires_grad=True) for d in (dh, dh, dv)]


def chunked(chunk: int):
    return on_features(lambda q, k, v: chunked_linear_attention(q, k, v, chunk, EPS))


CAUSAL_REF = on_features(functools.partial(linear_attention_reference, eps=EPS, causal=True))
GLOBAL_REF = on_features(functools.partial(linear_attention_reference, eps=EPS, causal=False))
GLOBAL = on_features(lambda q, k, v: global_linear_attention(q, k, v, EPS))


@pytest.mark.parametrize("T", [1, 5, 63, 64, 100, 500])
@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_chunked_equals_the_causal_kernel_matrix(T, chunk):
    assert_matches_reference(chunked(chunk), CAUSAL_REF, qkv(T))


@pytest.mark.parametrize("T", [1, 63, 500])
def test_global_equals_the_full_kernel_matrix(T):
    assert_matches_reference(GLOBAL, GLOBAL_REF, qkv(T))


def test_value_width_may_differ_from_the_key_width():
    assert_matches_reference(chunked(4), CAUSAL_REF, qkv(10, dh=3, dv=5))


@pytest.mark.parametrize("fn", [chunked(2), GLOBAL], ids=["chunked", "global"])
def test_gradcheck(fn):
    assert torch.autograd.gradcheck(fn, qkv(5, dh=2, dv=3, B=1, H=2))


def test_causal_output_ignores_later_keys_and_values():
    q, k, v = (t.detach() for t in qkv(40))
    y = chunked(8)(q, k, v)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 21:] += 5.0
    v2[:, :, 21:] -= 3.0
    torch.testing.assert_close(chunked(8)(q, k2, v2)[:, :, :21], y[:, :, :21])


@pytest.mark.parametrize("fn", [lambda q, k, v: chunked_linear_attention(q, k, v, 4, EPS),
                                lambda q, k, v: global_linear_attention(q, k, v, EPS)], ids=["chunked", "global"])
@pytest.mark.parametrize("shapes", [((2, 5, 8), (2, 5, 8), (2, 5, 8)), ((1, 2, 5, 8), (1, 2, 5, 4), (1, 2, 5, 8)),
                                    ((1, 2, 5, 8), (1, 2, 5, 8), (1, 2, 6, 8))], ids=["rank", "keys", "values"])
def test_mismatched_shapes_are_a_value_error(fn, shapes):
    with pytest.raises(ValueError, match=r"\[B, H, T, dh\]"):
        fn(*(torch.rand(*s) for s in shapes))


@pytest.mark.parametrize("chunk", [0, -1, 2.0, True])
def test_chunk_must_be_a_positive_int(chunk):
    with pytest.raises(ValueError, match="chunk"):
        chunked_linear_attention(*(torch.rand(1, 1, 5, 2) for _ in range(3)), chunk, EPS)
