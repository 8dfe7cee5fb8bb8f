"""Padding and causality end to end: what a model must not see cannot change its outputs or its gradients.

* LanguageModel (causal): logits at positions < t, and the gradients of a loss over them, do not depend on
  the tokens at positions >= t.
* Classifier and MultimodalRegressor, for a list of layer specs covering every registered mixer, both archs
  and every pooling, left and right padding: random ids at the padded positions change neither the outputs
  nor any parameter's gradient, and NaN written into a padded position's embedding never reaches the output.
"""
from __future__ import annotations

import pytest
import torch

import linmix
from linmix.config import ARCHS, POOLINGS, POSITIONAL
from linmix.models.spec import parse_layers

V, T, B = 30, 16, 3
CAUSAL_MIXERS = [name for name in linmix.MIXERS if linmix.MIXERS[name].supports_causal]

#: (layers, arch): together every registered mixer (all of them have a bidirectional form), both archs
SPECS = [
    ("summation", "bare"),
    ("aggregation,summation(normalize='none')", "bare"),
    ("spectral,fnet", "bare"),
    ("attention,local_attention(window=4)", "block"),
    ("linear_attention(chunk=4),spectral", "block"),
    ("window_linear_attention(window=4),summation", "block"),
    ("fnet,topological", "block"),
    ("summation,aggregation", "block"),
]


def test_the_spec_list_covers_every_registered_mixer_and_arch():
    assert {name for layers, _ in SPECS for name in parse_layers(layers)} == set(linmix.MIXERS)
    assert {arch for _, arch in SPECS} == set(ARCHS)


def param_grads(model, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-6), name


# ------------------------------------------------------------------------------------------- causal LM
@pytest.mark.parametrize("name", CAUSAL_MIXERS)
@pytest.mark.parametrize("positional", POSITIONAL)
def test_lm_positions_before_t_never_see_tokens_from_t_on(name, positional):
    torch.manual_seed(0)
    lm = linmix.LanguageModel(V, d_model=16, layers=f"{name},summation", max_len=24, n_heads=2,
                              positional=positional).eval()
    t = 13
    ids = torch.randint(0, V, (2, 24))
    future = ids.clone()
    future[:, t:] = torch.randint(0, V, (2, 24 - t))
    assert not torch.equal(future, ids)
    targets = torch.randint(0, V, (2, t))
    runs = []
    for x in (ids, future):
        logits = lm(x)
        assert logits.shape == (2, 24, V)
        loss = torch.nn.functional.cross_entropy(logits[:, :t].reshape(-1, V), targets.reshape(-1))
        runs.append((logits[:, :t].detach(), param_grads(lm, loss)))
    torch.testing.assert_close(runs[1][0], runs[0][0])
    assert_same_grads(runs[1][1], runs[0][1])


# ------------------------------------------------------------------------------------------- padded models
def make_mask(side: str) -> torch.Tensor:
    """Row 0 has 8 padded positions and row 1 has 3, on ``side``; row 2 is unpadded."""
    mask = torch.ones(B, T, dtype=torch.bool)
    for row, n in ((0, 8), (1, 3)):
        if side == "right":
            mask[row, T - n:] = False
        else:
            mask[row, :n] = False
    return mask


def build(kind: str, layers: str, arch: str, pooling: str):
    torch.manual_seed(0)
    common = dict(d_model=16, layers=layers, max_len=T, n_heads=2, pooling=pooling, arch=arch)
    if kind == "classifier":
        model = linmix.Classifier(V, 3, **common)
    else:
        model = linmix.MultimodalRegressor(V, 2, **common)
    with torch.no_grad():  # move off the near-identity init so every mixer visibly mixes
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def run(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if isinstance(model, linmix.MultimodalRegressor):
        return model(ids, torch.linspace(-1, 1, B * 2).reshape(B, 2), padding_mask=mask)
    return model(ids, padding_mask=mask)


def text_encoder(model):
    return (model.text if isinstance(model, linmix.MultimodalRegressor) else model.encoder).seq


def padded_case(kind: str, layers: str, arch: str, pooling: str, side: str):
    """A model with moved-off-init weights, a padding mask on ``side``, random ids and output weights."""
    model = build(kind, layers, arch, pooling)
    weights = torch.randn(B, 3) if kind == "classifier" else torch.randn(B)
    return model, make_mask(side), torch.randint(0, V, (B, T)), weights


def outputs_and_grads(model, ids: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor):
    """The outputs (detached) and every parameter's gradient of a weighted sum of them."""
    out = run(model, ids, mask)
    return out.detach(), param_grads(model, (out * weights).sum())


GRID = [pytest.param(kind, layers, arch, pooling, id=f"{kind}-{arch}-{layers}-{pooling}")
        for kind in ("classifier", "multimodal") for layers, arch in SPECS for pooling in POOLINGS]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("kind, layers, arch, pooling", GRID)
def test_padded_ids_change_neither_outputs_nor_gradients(kind, layers, arch, pooling, side):
    model, mask, ids, weights = padded_case(kind, layers, arch, pooling, side)
    other = torch.where(mask, ids, (ids + torch.randint(1, V, (B, T))) % V)  # every padded id differs
    assert (other != ids).sum() == (~mask).sum()
    results = [outputs_and_grads(model, x, mask, weights) for x in (ids, other)]
    torch.testing.assert_close(results[1][0], results[0][0])
    assert_same_grads(results[1][1], results[0][1])
    # the mask matters: the same ids unmasked give other outputs (so the check above is not vacuous)
    assert not torch.allclose(run(model, other, torch.ones_like(mask)), results[0][0])


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("kind, layers, arch, pooling", GRID)
def test_nan_in_a_padded_embedding_reaches_neither_outputs_nor_gradients(kind, layers, arch, pooling, side):
    model, mask, ids, weights = padded_case(kind, layers, arch, pooling, side)
    clean, clean_grads = outputs_and_grads(model, ids, mask, weights)

    def poison(module, inputs, output):
        pad = ~mask
        if output.shape[1] == T + 1:  # pooling="cls": the CLS token was prepended at position 0
            pad = torch.cat([torch.zeros(B, 1, dtype=torch.bool), pad], 1)
        return torch.where(pad.unsqueeze(-1), torch.full_like(output, float("nan")), output)

    handle = text_encoder(model).embed.register_forward_hook(poison)
    try:
        dirty, dirty_grads = outputs_and_grads(model, ids, mask, weights)
        with torch.no_grad():
            unmasked = run(model, ids, torch.ones_like(mask))
    finally:
        handle.remove()
    assert torch.isnan(unmasked).any()  # the hook really writes NaN
    torch.testing.assert_close(dirty, clean)
    assert all(torch.isfinite(g).all() for g in dirty_grads.values() if g is not None)
    assert_same_grads(dirty_grads, clean_grads)
