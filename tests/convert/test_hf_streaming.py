"""Streaming greedy decoding of converted Hugging Face models (linmix.convert.hf_decode) against full recompute.

Tiny GPT-2 / Llama models from config classes (no downloads), in float64: every streamed token must equal
the converted model's own full-prefix greedy token, and every step's logits its full forward's last ones.
"""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install 'linmix[hf]')")
if int(transformers.__version__.split(".")[0]) < 5:
    pytest.skip("linmix.convert follows the transformers 5 attention interfaces", allow_module_level=True)

import linmix  # noqa: E402
from convert_helpers import tiny_gpt2, tiny_llama  # noqa: E402
from linmix.convert import generate_streaming  # noqa: E402
from linmix.convert.adapters import HFAttentionAdapter  # noqa: E402
from linmix.convert.hf_decode import StreamingSession, streaming_state_bytes  # noqa: E402
from linmix.mixers.base import Mixer  # noqa: E402
from linmix.mixers.registry import registered  # noqa: E402

MAKERS = {"gpt2": tiny_gpt2, "llama": tiny_llama}
ATTN = {"gpt2": "transformer.h.{}.attn", "llama": "model.layers.{}.self_attn"}
#: window 3 < the 6-token prompt: the prefill fills the linear sums, and steps move keys out of the window
MIXERS = {"window_linear_attention": {"window": 3}, "linear_attention": {}, "summation": {}}
V, T, NEW = 50, 6, 7


def converted(family: str, mixer: str = "linear_attention", keep=None, **config):
    model = MAKERS[family](**config).double()
    return linmix.convert(model, mixer=mixer, keep=keep, **MIXERS.get(mixer, {}))[0]


def full_recompute(model, ids: torch.Tensor, new: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy tokens and per-step last-position logits from full forwards over the whole prefix."""
    logits = []
    with torch.no_grad():
        for _ in range(new):
            last = model(ids).logits[:, -1]
            logits.append(last)
            ids = torch.cat([ids, last.argmax(-1, keepdim=True)], dim=1)
    return ids, torch.stack(logits, dim=1)


def assert_clean(model) -> None:
    """No adapter is left in streaming mode."""
    adapters = [m for m in model.modules() if isinstance(m, HFAttentionAdapter)]
    assert adapters and all(a.stream is None and "stream" not in a.__dict__ for a in adapters)


def chunk_lengths(model) -> tuple[list[int], list]:
    """Records the sequence length every converted layer is called with (forward pre-hooks)."""
    seen: list[int] = []
    adapter = next(m for m in model.modules() if isinstance(m, HFAttentionAdapter))

    def hook(module, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        seen.append(x.shape[1])

    return seen, [adapter.register_forward_pre_hook(hook, with_kwargs=True)]


@pytest.mark.parametrize("family", list(MAKERS))
@pytest.mark.parametrize("mixer", list(MIXERS))
def test_streaming_equals_full_recompute(family, mixer, one_thread):
    model = converted(family, mixer)
    ids = torch.randint(1, V, (2, T))
    seen, handles = chunk_lengths(model)
    out, logits = generate_streaming(model, ids, NEW, return_logits=True)
    for h in handles:
        h.remove()
    assert seen == [T] + [1] * (NEW - 1), "one prefill over the prompt, then one token per forward"
    expected, full_logits = full_recompute(model, ids, NEW)
    assert out.dtype == torch.long and torch.equal(out, expected)
    torch.testing.assert_close(logits, full_logits, atol=1e-5, rtol=0)
    mask = torch.ones_like(ids)
    generated = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=NEW, use_cache=False,
                               pad_token_id=0, eos_token_id=None)
    assert torch.equal(out, generated)
    assert_clean(model)


@pytest.mark.parametrize("family, keep", [("gpt2", [1]), ("llama", [0])])
def test_kept_softmax_layers_decode_through_a_kv_cache(family, keep, one_thread):
    model = converted(family, "window_linear_attention", keep=keep)
    kept = ATTN[family].format(keep[0])
    assert not isinstance(model.get_submodule(kept), HFAttentionAdapter)
    ids = torch.randint(1, V, (2, T))
    out, logits = generate_streaming(model, ids, NEW, return_logits=True)
    expected, full_logits = full_recompute(model, ids, NEW)
    assert torch.equal(out, expected)
    torch.testing.assert_close(logits, full_logits, atol=1e-5, rtol=0)
    with StreamingSession(model) as session:
        session.forward(ids)
        after_prefill = streaming_state_bytes(model)
        session.forward(ids[:, :1])
        grown = streaming_state_bytes(model) - after_prefill
    kv_heads = model.config.num_key_value_heads if family == "llama" else model.config.n_head
    head_dim = model.config.hidden_size // (model.config.num_attention_heads)
    assert grown == 2 * 2 * kv_heads * head_dim * 8  # one more key and value per sequence, float64, one kept layer
    assert_clean(model)


def test_kept_layers_without_a_per_layer_cache_are_named(monkeypatch):
    import transformers.cache_utils as cache_utils

    model = converted("gpt2", keep=[0])
    monkeypatch.delattr(cache_utils, "DummyLayer")
    with pytest.raises(ValueError, match=r"layers transformer\.h\.0\.attn were kept as softmax attention .*"
                                         r"use model\.generate"):
        generate_streaming(model, torch.randint(1, V, (1, T)), 3)
    assert_clean(model)


def test_state_bytes_are_constant_for_a_linear_state():
    model = converted("llama", "linear_attention")
    ids = torch.randint(1, V, (2, T))
    with StreamingSession(model) as session:
        session.forward(ids)
        after_prefill = streaming_state_bytes(model)
        for _ in range(3):
            session.forward(ids[:, :1])
        assert after_prefill > 0 and streaming_state_bytes(model) == after_prefill
    with pytest.raises(ValueError, match="no streaming session is open"):
        streaming_state_bytes(model)


@pytest.mark.parametrize("family", list(MAKERS))
def test_eos_finishes_rows_as_generate_does(family):
    model = converted(family, "summation")
    ids = torch.randint(1, V, (2, T))
    free = generate_streaming(model, ids, NEW)
    eos = int(free[0, T + 1])  # row 0 emits it as its second token
    out = generate_streaming(model, ids, NEW, eos_id=eos)
    generated = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=NEW,
                               use_cache=False, eos_token_id=eos, pad_token_id=eos)
    assert torch.equal(out, generated)
    assert (out[0, T + 1:] == eos).all()


def test_padded_prompts_are_refused():
    model = converted("gpt2")
    ids = torch.randint(1, V, (2, T))
    mask = torch.ones_like(ids)
    assert torch.equal(generate_streaming(model, ids, 2, attention_mask=mask), generate_streaming(model, ids, 2))
    mask[1, :2] = 0
    with pytest.raises(ValueError, match=r"prompts \[1\] are padded \(attention_mask has zeros\)"):
        generate_streaming(model, ids, 2, attention_mask=mask)
    with StreamingSession(model):  # a padded mask reaching a layer directly is refused too
        with pytest.raises(ValueError, match=r"transformer\.h\.0\.attn: streaming decode got an attention mask "
                                             "with padding"):
            model(ids, attention_mask=mask, position_ids=torch.arange(T).expand(2, T))
    assert_clean(model)


def test_a_mixer_that_cannot_stream_is_named():
    class NoStream(Mixer):
        supports_streaming = False

        def _mix(self, x, padding_mask):
            return x.cumsum(1)

    with registered(NoStream, "no_stream_test"):
        model = linmix.convert(tiny_llama(), mixer="no_stream_test")[0]
        with pytest.raises(ValueError, match=r"model\.layers\.0\.self_attn: mixer 'no_stream_test' has no streaming "
                                             r"decode .*use model\.generate"):
            generate_streaming(model, torch.randint(1, V, (1, T)), 2)
    assert_clean(model)


def test_states_are_cleared_after_an_exception(one_thread):
    model = converted("llama", "window_linear_attention")
    ids = torch.randint(1, V, (2, T))
    with torch.no_grad():
        before = model(ids).logits
    with pytest.raises(RuntimeError, match="boom"):
        with StreamingSession(model) as session:
            session.forward(ids)
            assert all(a.stream.state is not None for a in model.modules() if isinstance(a, HFAttentionAdapter))
            raise RuntimeError("boom")
    assert_clean(model)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, before, atol=0, rtol=0)
    with StreamingSession(model) as session:
        session.forward(ids)
        with pytest.raises(ValueError, match="the session decodes 2 sequences, got a batch of 1"):
            session.forward(ids[:1, :1])
        with pytest.raises(ValueError, match="an earlier forward of this streaming session failed"):
            session.forward(ids[:, :1])
    assert_clean(model)
    assert torch.equal(generate_streaming(model, ids, 3), full_recompute(model, ids, 3)[0])


def test_misuse_inside_and_outside_a_session_is_an_error():
    model = converted("gpt2")
    ids = torch.randint(1, V, (2, T))
    with StreamingSession(model) as session:
        session.forward(ids)
        with pytest.raises(ValueError, match=r"expected position_ids 6\.\.11"):
            model(ids)  # the whole prefix again, as if no state were held
        with pytest.raises(ValueError, match="already open"):
            StreamingSession(model)
    with pytest.raises(ValueError, match="not open"):
        session.forward(ids)
    with pytest.raises(ValueError, match="has no layer converted by linmix.convert"):
        generate_streaming(tiny_gpt2(), ids, 2)
    with pytest.raises(ValueError, match="needs 64 positions; the model has n_positions=32"):
        generate_streaming(converted("gpt2", n_positions=32), torch.randint(1, V, (1, 60)), 5)
    with pytest.raises(ValueError, match=r"input_ids must be a \[B, T\] tensor"):
        generate_streaming(model, ids[0], 2)
    assert torch.equal(generate_streaming(model, ids, 0), ids)


def test_on_token_is_called_once_per_new_token_inside_the_session():
    model = converted("gpt2")
    ids = torch.randint(1, V, (1, T))
    seen = []
    out = generate_streaming(model, ids, 4, on_token=lambda i: seen.append((i, streaming_state_bytes(model))))
    assert [i for i, _ in seen] == [0, 1, 2, 3] and out.shape == (1, T + 4)
    assert len({b for _, b in seen}) == 1 and seen[0][1] > 0  # linear attention: the state does not grow
    assert torch.equal(out, generate_streaming(model, ids, 4))
    assert_clean(model)
