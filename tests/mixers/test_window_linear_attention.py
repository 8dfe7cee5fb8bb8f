"""Window + linear attention specifics: the window alone is softmax attention, the state stops growing at
the window, and converting a Llama keeps its rope base (so the plain swap is exact inside the window).

The contract (shapes, fast == reference, causality, padding, streaming, errors) runs in test_registry.py.
"""
from __future__ import annotations

import pytest
import torch

from linmix.mixers import build_mixer

D, H = 16, 2


def make(name: str, causal: bool = True, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_mixer(name, d_model=D, max_len=64, causal=causal, n_heads=H, **options).double().eval()


@pytest.mark.parametrize("causal", [True, False])
def test_a_window_covering_the_sequence_is_softmax_attention(causal: bool) -> None:
    hybrid = make("window_linear_attention", causal, window=16, rotary=True)
    full = make("attention", causal, rotary=True)
    full.load_state_dict({k: v for k, v in hybrid.state_dict().items() if k.startswith(("qkv", "out"))})
    x = torch.randn(2, 12, D, dtype=torch.float64)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 8:] = False
    torch.testing.assert_close(hybrid(x, mask), full(x, mask), atol=1e-12, rtol=0)


def test_keys_before_the_window_reach_the_output_through_the_linear_part() -> None:
    m = make("window_linear_attention", window=4)
    x = torch.randn(1, 12, D, dtype=torch.float64)
    changed = x.clone()
    changed[:, 0] += 1.0  # 11 positions before the last query: outside its window
    assert not torch.allclose(m(x)[:, -1], m(changed)[:, -1])
    with torch.no_grad():
        m.log_linear_scale.fill_(-80.0)  # lam ~ 0: the linear part switched off
    torch.testing.assert_close(m(x)[:, -1], m(changed)[:, -1], atol=1e-12, rtol=0)


def test_the_state_stops_growing_at_the_window() -> None:
    m = make("window_linear_attention", window=8)
    with torch.no_grad():
        sizes = [m.prefill(torch.randn(1, n, D, dtype=torch.float64))[1].nbytes() for n in (3, 8, 40, 200)]
    assert len(set(sizes)) == 1
    dh, window = D // H, 8
    floats = 2 * H * window * dh + H * 2 * dh * dh + H * 2 * dh  # k and v caches, S, z
    assert sizes[0] == floats * 8  # float64


def test_converting_a_llama_keeps_its_rope_base_and_is_exact_inside_the_window() -> None:
    pytest.importorskip("transformers", reason="the Llama conversion needs transformers")
    from transformers import LlamaConfig, LlamaForCausalLM

    from linmix.convert import convert

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=50, max_position_embeddings=64, rope_theta=100000.0)
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        before = model(input_ids=ids, use_cache=False).logits
        model, report = convert(model, mixer="window_linear_attention", window=16)
        after = model(input_ids=ids, use_cache=False).logits
    assert "rotary_base=100000.0" in report.replaced[0].new
    assert not any("approximated" in note for note in report.notes)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
