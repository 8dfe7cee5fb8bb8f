"""Converter family for linmix's own models: the softmax ``attention`` / ``local_attention`` mixers of
:class:`~linmix.models.blocks.Block` and :class:`~linmix.models.blocks.SequenceEncoder` stacks.

The new mixer simply takes the old one's place (``block.mixer``, or the layer itself in a bare stack):
both follow the same Mixer contract, so no adapter is needed. It gets the old mixer's width, ``max_len``,
causality, heads and rotary setting where it takes them, and its q/k/v/out from the old fused ``qkv`` and
``out``. Inside a linmix model (a :class:`~linmix.LanguageModel`, :class:`~linmix.Classifier` or
:class:`~linmix.MultimodalRegressor`) the encoder's layer specs and the model's ``config.layers`` are
rewritten too, so ``save_pretrained`` / ``from_pretrained`` rebuild the converted model exactly.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from linmix.config import ModelConfig
from linmix.convert.common import Built, Projections, Site, load_projections, mixer_for, position_note, spec_text
from linmix.mixers.attention import Attention
from linmix.models.blocks import SequenceEncoder
from linmix.models.spec import LayerSpec, format_layers

NAME = "linmix"


def _layer_index(model: nn.Module) -> dict[int, tuple[SequenceEncoder, int]]:
    """``id(mixer) -> (encoder, layer index)`` for every mixer of every SequenceEncoder in ``model``."""
    found = {}
    for module in model.modules():
        if isinstance(module, SequenceEncoder):
            for i, mixer in enumerate(module.mixers):
                found[id(mixer)] = (module, i)
    return found


def owner_config(model: nn.Module) -> ModelConfig | None:
    """The ModelConfig that describes the model's (single) SequenceEncoder, if the model carries one."""
    cfg = getattr(model, "config", None)
    encoders = [m for m in model.modules() if isinstance(m, SequenceEncoder)]
    return cfg if isinstance(cfg, ModelConfig) and len(encoders) == 1 else None


def find_sites(model: nn.Module, inside_adapters: set[str]) -> list[Site]:
    """Every linmix softmax-attention mixer (``attention``, ``local_attention``) in module order, except
    those already living inside a conversion adapter (paths under ``inside_adapters``)."""
    layers = _layer_index(model)
    sites = []
    for path, module in model.named_modules():
        if not isinstance(module, Attention) or any(path.startswith(p + ".") for p in inside_adapters):
            continue
        extra = {"layer": layers.get(id(module))}
        sites.append(Site(path, module, NAME, module.d_model, module.n_heads, module.causal, module.max_len,
                          rotary=module.rotary, extra=extra))
    return sites


def projections(mixer: Attention) -> Projections:
    """The fused qkv split into q, k, v, plus out, in Linear layout."""
    q, k, v = mixer.qkv.weight.chunk(3)
    qb, kb, vb = mixer.qkv.bias.chunk(3)
    return Projections(q, k, v, mixer.out.weight, qb, kb, vb, mixer.out.bias, source="qkv, out")


def build(site: Site, name: str, options: dict[str, Any], max_len: int | None, model: nn.Module) -> Built:
    """The new mixer for one linmix attention layer (its own ``max_len``: a linmix model's is fixed by its
    config), initialised from the old projections; plus the layer spec to record in the model's config."""
    cfg = owner_config(model) if site.extra["layer"] is not None else None
    model_level = dict(cfg.mixer_options.get(name, {})) if cfg is not None else {}
    mixer, opts = mixer_for(site, name, {**model_level, **options})
    initialised = load_projections(mixer, projections(site.module))
    notes = position_note(site, name, opts)
    if getattr(site.module, "window", None) is not None and name != "local_attention":
        notes.append(f"{site.path}: the old window={site.module.window} is not carried over to {name}")
    extra = {}
    if site.extra["layer"] is not None:
        extra["layer_spec"] = LayerSpec(name, _inline(opts, model_level, cfg) if cfg is not None else opts)
    return Built(mixer, mixer, spec_text(name, opts), initialised, notes, extra)


def _inline(opts: dict[str, Any], model_level: dict[str, Any], cfg: ModelConfig) -> dict[str, Any]:
    """The options to write inline in the layer spec: those the model would not fill in by itself
    (``mixer_options`` of the model, its ``n_heads``, and ``rotary`` under ``positional="rotary"``)."""
    implied = {"n_heads": cfg.n_heads, "rotary": cfg.positional == "rotary"}
    inline = {}
    for key, value in opts.items():
        if key in model_level:
            if model_level[key] == value:
                continue
        elif key in implied and implied[key] == value:
            continue
        inline[key] = value
    return inline


def finish(model: nn.Module, replaced: list[tuple[Site, Built]]) -> list[str]:
    """Record the new layers in their encoder's specs and names and in the model's ``config.layers``."""
    notes = []
    cfg = owner_config(model)
    for site, built in replaced:
        layer = site.extra["layer"]
        if layer is None:
            continue
        encoder, i = layer
        spec = built.extra["layer_spec"]
        encoder.layer_specs[i] = spec
        encoder.layer_names[i] = spec.name
    if cfg is not None and any(site.extra["layer"] is not None for site, _ in replaced):
        encoder = next(m for m in model.modules() if isinstance(m, SequenceEncoder))
        new = dataclasses.replace(cfg, layers=format_layers(encoder.layer_specs))
        new.validate()
        model.config = new
        notes.append(f"config.layers is now {new.layers!r} (save_pretrained writes the converted model)")
    return notes


def calibrating(model: nn.Module):
    """Nothing to change while calibrating a linmix model."""
    return None

