"""Models built from mixers: generation, input errors, tied heads, norms, padded == unpadded, fusion.

Layer specs, padding and causality, save/load and generate's mode and eos handling: the other files here.
"""
from __future__ import annotations

import pytest
import torch

import linmix

V = 40


def tiny_lm(layers: str, **kw) -> linmix.LanguageModel:
    torch.manual_seed(0)
    return linmix.LanguageModel(V, d_model=16, layers=layers, max_len=64, n_heads=2, **kw).eval()


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
        linmix.LanguageModel(V, layers="summation", positional="alibi")


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
