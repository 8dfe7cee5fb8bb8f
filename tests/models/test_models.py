"""Models built from mixers: causality end to end, generation, pooling with padding, save/load."""
from __future__ import annotations

import json

import pytest
import torch

import linmix
from linmix.models.spec import format_layers, parse_layers

CAUSAL_MIXERS = [n for n in linmix.MIXERS if type(linmix.build_mixer(n, 8, 8, causal=False)).supports_causal]
V = 40


def tiny_lm(layers: str, **kw) -> linmix.LanguageModel:
    torch.manual_seed(0)
    return linmix.LanguageModel(V, d_model=16, layers=layers, max_len=64, n_heads=2, **kw).eval()


def test_parse_layers_expands_repeats_and_round_trips():
    names = parse_layers(" summation*3, attention ")
    assert names == ["summation"] * 3 + ["attention"]
    assert format_layers(names) == "summation*3,attention"
    for bad, msg in [("summation*x", "bad repeat"), ("summation,,attention", "empty layer"),
                     ("summation*0", ">= 1"), ("atention", "registered mixers")]:
        with pytest.raises(ValueError, match=msg):
            parse_layers(bad)


@pytest.mark.parametrize("name", CAUSAL_MIXERS)
@pytest.mark.parametrize("positional", ["learned", "multiplicative", "none"])
def test_lm_logits_never_see_future_tokens(name, positional):
    lm = tiny_lm(f"{name},summation", positional=positional)
    ids = torch.randint(0, V, (2, 24))
    ref = lm(ids)
    assert ref.shape == (2, 24, V)
    ids2 = ids.clone()
    ids2[:, 13:] = torch.randint(0, V, (2, 11))
    torch.testing.assert_close(lm(ids2)[:, :13], ref[:, :13])


@pytest.mark.parametrize("layers", ["summation*2,attention", "aggregation,local_attention",
                                    "spectral,topological", "linear_attention,summation"])
def test_greedy_generate_equals_repeated_full_forward_argmax(layers):
    lm = tiny_lm(layers)
    prompt = torch.randint(0, V, (2, 5))
    out = lm.generate(prompt, max_new_tokens=20, temperature=0)
    ids = prompt
    for _ in range(20):
        ids = torch.cat([ids, lm(ids)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ids)


def test_generate_streams_each_token_and_samples_reproducibly():
    lm = tiny_lm("summation*2,attention")
    prompt = torch.randint(0, V, (1, 3))
    seen = []
    g1 = torch.Generator().manual_seed(5)
    out = lm.generate(prompt, 12, temperature=0.8, top_k=10, top_p=0.9, stream=seen.append, generator=g1)
    assert torch.equal(torch.cat(seen), out[0, 3:])
    g2 = torch.Generator().manual_seed(5)
    assert torch.equal(out, lm.generate(prompt, 12, temperature=0.8, top_k=10, top_p=0.9, generator=g2))


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.tensor([[4.0, 3.0, 2.0, -5.0, -6.0]])
    picks = {int(linmix.models.sample_next(logits, 1.0, 2, None)) for _ in range(200)}
    assert picks <= {0, 1} and len(picks) == 2
    # p(0) ~ 0.665 < 0.7, so top_p=0.7 keeps tokens 0 and 1 only.
    picks = {int(linmix.models.sample_next(logits, 1.0, None, 0.7)) for _ in range(300)}
    assert picks == {0, 1}


def test_generate_rejects_bad_arguments_clearly():
    lm = tiny_lm("summation")
    prompt = torch.randint(0, V, (1, 60))
    with pytest.raises(ValueError, match="exceeds max_len=64"):
        lm.generate(prompt, 10)
    with pytest.raises(ValueError, match="temperature"):
        lm.generate(prompt[:, :3], 2, temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        lm.generate(prompt[:, :3], 2, top_p=1.5)


def test_lm_input_errors_name_the_problem():
    lm = tiny_lm("summation")
    with pytest.raises(ValueError, match="max_len=64"):
        lm(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 40\)"):
        lm(torch.full((1, 4), V))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        lm(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="positional"):
        linmix.LanguageModel(V, layers="summation", positional="rotary")


def test_tied_head_shares_the_embedding():
    lm = tiny_lm("summation")
    assert lm.head.weight.data_ptr() == lm.encoder.embed.weight.data_ptr()
    untied = tiny_lm("summation", tie_weights=False)
    assert untied.head.weight.data_ptr() != untied.encoder.embed.weight.data_ptr()


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_post_and_pre_norm_blocks_both_learn_to_repeat_the_first_token(norm):
    torch.manual_seed(0)
    lm = linmix.LanguageModel(8, d_model=32, layers="summation,attention", max_len=16, n_heads=2, norm=norm)
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        ids = torch.randint(0, 8, (16, 1)).repeat(1, 16)
        logits = lm(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 8), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.2 * first


@pytest.mark.parametrize("layers,arch", [("summation", "bare"), ("attention", "block"),
                                         ("summation,attention", "block"), ("fnet,spectral", "block")])
@pytest.mark.parametrize("pooling", ["mean", "sum", "cls"])
def test_classifier_ignores_padding(layers, arch, pooling):
    torch.manual_seed(0)
    clf = linmix.Classifier(V, 3, d_model=16, layers=layers, max_len=20, n_heads=2, pooling=pooling,
                            arch=arch).eval()
    ids = torch.randint(0, V, (2, 20))
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[0, 12:] = False
    out = clf(ids, padding_mask=mask)
    assert out.shape == (2, 3)
    ids2 = ids.clone()
    ids2[~mask] = torch.randint(0, V, (int((~mask).sum()),))
    torch.testing.assert_close(clf(ids2, padding_mask=mask), out)


@pytest.mark.parametrize("layers", ["summation", "attention", "summation,attention"])
def test_classifier_padded_batch_equals_unpadded_example(layers):
    torch.manual_seed(0)
    clf = linmix.Classifier(V, 3, d_model=16, layers=layers, max_len=20, n_heads=2).eval()
    ids = torch.randint(0, V, (1, 20))
    mask = torch.ones(1, 20, dtype=torch.bool)
    mask[0, 9:] = False
    torch.testing.assert_close(clf(ids, padding_mask=mask), clf(ids[:, :9]))


def test_classifier_rejects_causal_cls_pooling():
    with pytest.raises(ValueError, match="pooling='cls'"):
        linmix.Classifier(V, 2, layers="summation", pooling="cls", causal=True)


@pytest.mark.parametrize("fusion", ["add", "concat"])
def test_multimodal_regressor_shapes_and_padding(fusion):
    torch.manual_seed(0)
    reg = linmix.MultimodalRegressor(V, n_numeric=3, d_model=16, layers="summation", fusion=fusion,
                                     max_len=20).eval()
    ids = torch.randint(0, V, (4, 10))
    num = torch.randn(4, 3)
    mask = torch.ones(4, 10, dtype=torch.bool)
    mask[:, 7:] = False
    pred = reg(ids, num, padding_mask=mask)
    assert pred.shape == (4,)
    torch.testing.assert_close(reg(ids[:, :7], num), pred)
    with pytest.raises(ValueError, match="n_numeric=3"):
        reg(ids, torch.randn(4, 2))


@pytest.mark.parametrize("make", [
    lambda: linmix.LanguageModel(V, d_model=16, layers="summation*2,attention", max_len=32, n_heads=2),
    lambda: linmix.Classifier(V, 4, d_model=16, layers="summation", max_len=32, pooling="cls", arch="bare"),
    lambda: linmix.MultimodalRegressor(V, 2, d_model=16, layers="spectral", fusion="concat", max_len=32),
])
def test_save_and_load_round_trip(tmp_path, make):
    model = make().eval()
    model.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"model.safetensors", "config.json"}
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_type"] == type(model).__name__
    loaded = type(model).from_pretrained(tmp_path / "m").eval()
    assert type(linmix.load_pretrained(tmp_path / "m")) is type(model)
    ids = torch.randint(0, V, (2, 12))
    args = (ids, torch.randn(2, 2)) if isinstance(model, linmix.MultimodalRegressor) else (ids,)
    torch.testing.assert_close(loaded(*args), model(*args))
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_loading_something_that_is_not_a_model_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        linmix.LanguageModel.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="missing config.json, model.safetensors"):
        linmix.LanguageModel.from_pretrained(tmp_path / "empty")
    clf = linmix.Classifier(V, 2, d_model=16, max_len=8)
    clf.save_pretrained(tmp_path / "clf")
    with pytest.raises(ValueError, match="holds a Classifier"):
        linmix.LanguageModel.from_pretrained(tmp_path / "clf")
