"""linmix.convert on torch.nn.MultiheadAttention: nn.TransformerEncoder/Decoder layers and stand-alone modules."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import linmix
from convert_helpers import assert_causal, assert_unchanged, grads_by_name, snapshot
from linmix.convert.adapters import MultiheadAttentionAdapter

D, H = 32, 4


def encoder(batch_first: bool = True, layers: int = 2, norm_first: bool = False) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(D, H, 64, dropout=0.0, batch_first=batch_first, norm_first=norm_first)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).double().eval()


def decoder() -> nn.TransformerDecoder:
    layer = nn.TransformerDecoderLayer(D, H, 64, dropout=0.0, batch_first=True)
    return nn.TransformerDecoder(layer, 2).double().eval()


def padding(B: int = 3, T: int = 7) -> torch.Tensor:
    """key_padding_mask, True = padding."""
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[0, 5:] = True
    pad[2, 3:] = True
    return pad


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_attention_mixer_reproduces_the_encoder_on_real_tokens(batch_first, norm_first):
    model = encoder(batch_first, norm_first=norm_first)
    x = torch.randn(3, 7, D, dtype=torch.float64)
    x = x if batch_first else x.transpose(0, 1)
    pad = padding()
    ref = model(x, src_key_padding_mask=pad)
    converted, report = linmix.convert(copy.deepcopy(model), mixer="attention")
    out = converted(x, src_key_padding_mask=pad)
    real = ~pad if batch_first else (~pad).T
    torch.testing.assert_close(out[real], ref[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(converted(x), model(x), atol=1e-5, rtol=1e-5)
    assert report.replaced_paths == ["layers.0.self_attn", "layers.1.self_attn"]
    assert all(isinstance(layer.self_attn, MultiheadAttentionAdapter) for layer in converted.layers)
    assert report.initialised["layers.0.self_attn"] == "qkv, out <- in_proj, out_proj"


def test_causal_encoder_is_reproduced_and_leak_free():
    model = encoder()
    x = torch.randn(2, 9, D, dtype=torch.float64)
    mask = nn.Transformer.generate_square_subsequent_mask(9, dtype=torch.float64)
    ref = model(x, mask=mask, is_causal=True)
    converted, _ = linmix.convert(copy.deepcopy(model), mixer="attention", causal=True)
    torch.testing.assert_close(converted(x, mask=mask, is_causal=True), ref, atol=1e-5, rtol=1e-5)
    for mixer in ("linear_attention", "summation", "local_attention"):
        converted, _ = linmix.convert(copy.deepcopy(model), mixer=mixer, causal=True)
        assert_causal(lambda inp: converted(inp, mask=mask, is_causal=True), x)


def test_a_decoder_converts_its_self_attention_and_keeps_cross_attention():
    model = decoder()
    tgt, memory = torch.randn(2, 6, D, dtype=torch.float64), torch.randn(2, 5, D, dtype=torch.float64)
    mask = nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.float64)
    ref = model(tgt, memory, tgt_mask=mask, tgt_is_causal=True)
    converted, report = linmix.convert(copy.deepcopy(model), mixer="attention")
    torch.testing.assert_close(converted(tgt, memory, tgt_mask=mask, tgt_is_causal=True), ref, atol=1e-5, rtol=1e-5)
    assert report.replaced_paths == ["layers.0.self_attn", "layers.1.self_attn"]
    assert set(report.kept) == {"layers.0.multihead_attn", "layers.1.multihead_attn"}
    assert "cross-attention" in report.kept["layers.0.multihead_attn"]
    assert isinstance(converted.layers[0].multihead_attn, nn.MultiheadAttention)
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"layers\.0\.multihead_attn: cannot replace cross-attention"):
        linmix.convert(model, mixer="attention", cross_attention="replace")
    assert_unchanged(model, before)


def standalone(batch_first: bool, causal: bool = False, mixer: str = "linear_attention"):
    holder = nn.Module()
    holder.attn = nn.MultiheadAttention(D, H, batch_first=batch_first)
    converted, _ = linmix.convert(holder, mixer=mixer, causal=causal)
    return converted.attn


@pytest.mark.parametrize("batch_first", [True, False])
def test_the_adapter_keeps_multihead_attentions_calling_convention(batch_first):
    attn = standalone(batch_first)
    x = torch.randn(3, 7, D) if batch_first else torch.randn(7, 3, D)
    out, weights = attn(x, x, x)
    assert out.shape == x.shape and weights is None
    out2, _ = attn(x, x, x, need_weights=False, average_attn_weights=False)
    torch.testing.assert_close(out2, out)
    seq = attn.mixer(x if batch_first else x.transpose(0, 1))
    torch.testing.assert_close(out, seq if batch_first else seq.transpose(0, 1))
    unbatched, _ = attn(x[0] if batch_first else x[:, 0], *(x[0] if batch_first else x[:, 0],) * 2)
    torch.testing.assert_close(unbatched, out[0] if batch_first else out[:, 0])
    with pytest.raises(ValueError, match="attn: a converted attention layer is self-attention only"):
        attn(x, torch.randn_like(x), torch.randn_like(x))


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("as_float", [False, True])
def test_padded_tokens_cannot_change_real_outputs(batch_first, as_float):
    attn = standalone(batch_first)
    pad = padding()
    kpm = torch.zeros(pad.shape).masked_fill(pad, float("-inf")) if as_float else pad
    x = torch.randn(3, 7, D)
    garbage = torch.where(pad[..., None], torch.randn(3, 7, D) * 1e3, x)
    if not batch_first:
        x, garbage = x.transpose(0, 1), garbage.transpose(0, 1)
    a, _ = attn(x, x, x, key_padding_mask=kpm)
    b, _ = attn(garbage, garbage, garbage, key_padding_mask=kpm)
    real = ~pad if batch_first else (~pad).T
    torch.testing.assert_close(a[real], b[real])
    assert not torch.allclose(a[real], attn(x, x, x)[0][real]), "the padding mask was ignored"


def test_a_causal_attn_mask_is_detected_and_other_masks_are_refused():
    attn = standalone(True, causal=True)
    x = torch.randn(2, 6, D)
    wanted, _ = attn(x, x, x, is_causal=True)
    float_mask = nn.Transformer.generate_square_subsequent_mask(6)
    bool_mask = torch.ones(6, 6, dtype=torch.bool).triu(1)
    for mask in (float_mask, bool_mask, bool_mask.expand(2 * H, 6, 6)):
        torch.testing.assert_close(attn(x, x, x, attn_mask=mask)[0], wanted)
    with pytest.raises(ValueError, match="attn: called bidirectional but converted with causal=True"):
        attn(x, x, x)
    with pytest.raises(ValueError, match="attn: attn_mask is neither causal nor empty"):
        attn(x, x, x, attn_mask=torch.eye(6, dtype=torch.bool))
    with pytest.raises(ValueError, match="additive bias"):
        attn(x, x, x, attn_mask=torch.randn(6, 6))
    bidirectional = standalone(True, causal=False)
    with pytest.raises(ValueError, match="called causal but converted with causal=False; convert again with causal="):
        bidirectional(x, x, x, attn_mask=float_mask)
    torch.testing.assert_close(bidirectional(x, x, x, attn_mask=torch.zeros(6, 6))[0], bidirectional(x, x, x)[0])


def test_keep_indices_and_ratio_count_the_attention_layers():
    model = encoder(layers=4)
    _, report = linmix.convert(copy.deepcopy(model), mixer="linear_attention", keep=[0, -1])
    assert report.replaced_paths == ["layers.1.self_attn", "layers.2.self_attn"]
    assert set(report.kept) == {"layers.0.self_attn", "layers.3.self_attn"}
    _, report = linmix.convert(copy.deepcopy(model), mixer="linear_attention", keep=0.5)
    assert sorted(report.kept) == ["layers.1.self_attn", "layers.3.self_attn"]
    for bad, needle in ([4], "keep index 4 is out of range for 4 attention layers"), (1.5, "must lie in"), \
                       ("most", "keep must be None"), ([True], "integer layer indices"):
        before = snapshot(model)
        with pytest.raises(ValueError, match=needle):
            linmix.convert(model, mixer="linear_attention", keep=bad)
        assert_unchanged(model, before)


def test_keep_auto_keeps_the_layers_the_swap_imitates_worst():
    model = encoder(layers=3)
    x = torch.randn(2, 8, D, dtype=torch.float64)
    _, report = linmix.convert(copy.deepcopy(model), mixer="linear_attention", keep="auto", calibration=x,
                               auto_keep=1)
    assert len(report.kept) == 1 and len(report.scores) == 3
    worst = max(report.scores, key=report.scores.get)
    assert list(report.kept) == [worst] and "largest relative MSE" in report.kept[worst]
    _, exact = linmix.convert(copy.deepcopy(model), mixer="attention", keep="auto", calibration=x, auto_keep=1)
    assert max(exact.scores.values()) < 1e-20  # the same attention: a plain swap is exact
    with pytest.raises(ValueError, match="keep='auto' needs calibration="):
        linmix.convert(copy.deepcopy(model), mixer="linear_attention", keep="auto")


def test_gradients_reach_every_parameter_or_only_the_new_mixers():
    model = encoder().float().train()
    x = torch.randn(2, 6, D)
    converted, _ = linmix.convert(copy.deepcopy(model), mixer="linear_attention")
    grads = grads_by_name(converted, converted(x).pow(2).mean())
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    frozen, report = linmix.convert(copy.deepcopy(model), mixer="linear_attention", freeze=True)
    grads = grads_by_name(frozen, frozen(x).pow(2).mean())
    trainable = {n for n, g in grads.items() if g is not None}
    assert trainable and all(".self_attn.mixer." in n for n in trainable)
    assert trainable == {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert any("freeze=True" in note for note in report.notes)


def test_an_unknown_attention_class_or_option_fails_before_anything_changes():
    class RelativeAttention(nn.Module):
        def forward(self, x):
            return x

    model = nn.Module()
    model.enc = encoder()
    model.extra = RelativeAttention()
    before = snapshot(model)
    with pytest.raises(ValueError, match="extra: no converter for attention class RelativeAttention"):
        linmix.convert(model, mixer="linear_attention")
    assert_unchanged(model, before)
    model = encoder()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"layers\.0\.self_attn: mixer 'linear_attention' does not take option"):
        linmix.convert(model, mixer="linear_attention", window=4)
    with pytest.raises(ValueError, match="bidirectional only"):
        linmix.convert(model, mixer="fnet", causal=True)
    with pytest.raises(ValueError, match="unknown mixer 'nope'"):
        linmix.convert(model, mixer="nope")
    assert_unchanged(model, before)
    with pytest.raises(ValueError, match="no attention layer to convert"):
        linmix.convert(nn.Linear(3, 3))


def test_the_report_lists_paths_parameters_and_initialisation():
    model = encoder(layers=3)
    before = sum(p.numel() for p in model.parameters())
    converted, report = linmix.convert(model, mixer="summation", keep=[1])
    assert report.params_before == before
    assert report.params_after == sum(p.numel() for p in converted.parameters())
    assert report.replaced[0].old == "MultiheadAttention" and report.replaced[0].new.startswith("summation")
    assert report.initialised == {}  # summation has no q/k/v/out to copy into
    text = str(report)
    for needle in ("layers.0.self_attn", "layers.1.self_attn", "kept: keep=[1]", "no (fresh init)",
                   f"{before:,} -> {report.params_after:,}"):
        assert needle in text, text
