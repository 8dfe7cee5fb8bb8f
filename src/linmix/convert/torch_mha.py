"""Converter family for ``torch.nn.MultiheadAttention``: the self-attention of ``nn.TransformerEncoderLayer``
and ``nn.TransformerDecoderLayer`` (and any other MultiheadAttention used as self-attention).

A MultiheadAttention does not know whether it will be called causally, so the replacement's causality is
the caller's ``causal=`` (default: bidirectional for an encoder layer or a stand-alone module, causal for a
decoder layer's self-attention, as ``nn.Transformer`` masks its target). Calling the converted layer the
other way is a ``ValueError`` that says to convert again. A decoder layer's ``multihead_attn`` (attention
over the encoder's memory) is cross-attention and is always kept, as is any MultiheadAttention with
``kdim``/``vdim`` different from ``embed_dim``. Weights: ``in_proj`` (or the separate q/k/v projections)
and ``out_proj`` initialise the mixer's q/k/v/out; ``bias_k``/``bias_v`` and ``add_zero_attn`` have no
counterpart and are dropped (noted in the report).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from linmix.convert.adapters import MultiheadAttentionAdapter
from linmix.convert.common import Built, Projections, Site, load_projections, mixer_for, spec_text

NAME = "torch"
#: the mixer's max_len for a MultiheadAttention (which has none), unless convert(max_len=...) is given
DEFAULT_MAX_LEN = 2048


def find_sites(model: nn.Module, causal: bool | None) -> list[Site]:
    """Every MultiheadAttention in ``model``, in module order; cross-attention marked as such."""
    owners: dict[int, tuple[str, bool]] = {}  # id(mha) -> (role, default causal)
    for module in model.modules():
        if isinstance(module, nn.TransformerDecoderLayer):
            owners[id(module.self_attn)] = ("decoder self-attention", True)
            owners[id(module.multihead_attn)] = ("cross", False)
        elif isinstance(module, nn.TransformerEncoderLayer):
            owners[id(module.self_attn)] = ("encoder self-attention", False)
    sites = []
    for path, module in model.named_modules():
        if not isinstance(module, nn.MultiheadAttention):
            continue
        role, default = owners.get(id(module), ("self-attention", False))
        cross = ""
        if role == "cross":
            cross = "cross-attention over the decoder's memory: linmix mixers mix one sequence"
        elif module.kdim != module.embed_dim or module.vdim != module.embed_dim:
            cross = "kdim/vdim differ from embed_dim, so it attends over another sequence (cross-attention)"
        sites.append(Site(path, module, NAME, module.embed_dim, module.num_heads,
                          default if causal is None else bool(causal), DEFAULT_MAX_LEN, cross=cross))
    return sites


def projections(mha: nn.MultiheadAttention) -> Projections:
    """The module's q/k/v/out projections in Linear layout."""
    D = mha.embed_dim
    if mha._qkv_same_embed_dim:
        q, k, v = mha.in_proj_weight.split(D)
        source = "in_proj, out_proj"
    else:
        q, k, v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
        source = "q_proj, k_proj, v_proj, out_proj"
    biases: tuple[Any, Any, Any] = (None, None, None)
    if mha.in_proj_bias is not None:
        biases = tuple(mha.in_proj_bias.split(D))
    return Projections(q, k, v, mha.out_proj.weight, *biases, o_bias=mha.out_proj.bias, source=source)


def build(site: Site, name: str, options: dict[str, Any], max_len: int | None) -> Built:
    """The adapter around a mixer initialised from the MultiheadAttention's projections."""
    mha = site.module
    mixer, opts = mixer_for(site, name, options, max_len)
    initialised = load_projections(mixer, projections(mha))
    notes = []
    if mha.bias_k is not None or mha.add_zero_attn:
        notes.append(f"{site.path}: bias_k/bias_v/add_zero_attn have no counterpart in {name} and were dropped")
    adapter = MultiheadAttentionAdapter(mixer, site.path, mha.batch_first, mha.num_heads)
    return Built(adapter, mixer, spec_text(name, opts), initialised, notes)


def finish(model: nn.Module, replaced: list[tuple[Site, Built]]) -> list[str]:
    """Turn off the nested-tensor fast path of every ``nn.TransformerEncoder`` holding a converted layer
    (that path reads the old fused projection weights, which are gone)."""
    notes = []
    for path, module in model.named_modules():
        if isinstance(module, nn.TransformerEncoder) and getattr(module, "use_nested_tensor", False):
            if any(isinstance(getattr(layer, "self_attn", None), MultiheadAttentionAdapter) for layer in module.layers):
                module.use_nested_tensor = False
                notes.append(f"{path or 'model'}: nested-tensor fast path turned off (it needs softmax attention)")
    return notes


def calibrating(model: nn.Module):
    """Nothing to change while calibrating a torch model."""
    return None
