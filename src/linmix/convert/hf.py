"""Converter family for Hugging Face transformers: GPT-2 (``GPT2Attention``) and Llama (``LlamaAttention``).

Written against the transformers 5 module interfaces (both attention modules return ``(output, weights)``
and take the cache as ``cache`` or ``past_key_values``); older majors are refused with the fix. The
adapter (:class:`~linmix.convert.adapters.HFAttentionAdapter`) accepts the module's forward arguments and
returns ``(output, None)``. Converted layers keep no KV cache, so the model's ``config.use_cache`` (and
its generation config's) is set to False: ``generate`` then runs the whole prefix every step
(:func:`linmix.convert.hf_decode.generate_streaming` decodes from the mixers' states instead).

Weights: GPT-2's ``c_attn`` / ``c_proj`` are ``Conv1D`` (``y = x W + b``, so the weights are transposed
into Linear layout); Llama's ``q_proj``/``k_proj``/``v_proj``/``o_proj`` have no bias (copied as zeros)
and grouped-query keys/values are repeated to the query head count (query head ``h`` uses key/value head
``h // (H / H_kv)``, as transformers does). The host's score scale (GPT-2's optional ``1 / (layer + 1)``,
or no ``1 / sqrt(dh)``) is folded into the query weights, so a softmax mixer computes the same scores.
Llama's rotary positions: the mixer is built with ``rotary=True`` when it takes it (linmix's rotary pairs
channel ``i`` with ``i + dh/2`` at base 10000, as Llama's default rope does; another rope base or scaling
is approximated and noted in the report; a mixer with a ``rotary_base`` option is given the model's rope
base). Mixers without rotary lose Llama's positions (also noted).
"""
from __future__ import annotations

import contextlib
import inspect
import math
import sys
from typing import Any

import torch
from torch import nn

from linmix.convert.adapters import HFAttentionAdapter
from linmix.convert.common import Built, Projections, Site, load_projections, mixer_for, position_note, spec_text
from linmix.mixers.registry import mixer_options
from linmix.ops.rotary import DEFAULT_BASE

#: the transformers major version the adapters follow
SUPPORTED_MAJOR = 5


def _classes() -> dict[str, type] | None:
    """``{family: attention class}`` when transformers is already imported (a model cannot hold its
    modules otherwise, so a model without them never pays for importing it)."""
    if "transformers" not in sys.modules:
        return None
    try:
        from transformers.models.gpt2.modeling_gpt2 import GPT2Attention
        from transformers.models.llama.modeling_llama import LlamaAttention
    except ImportError:
        return None
    return {"gpt2": GPT2Attention, "llama": LlamaAttention}


def _check_version() -> None:
    import transformers

    major = int(transformers.__version__.split(".")[0])
    if major < SUPPORTED_MAJOR:
        raise ValueError(f"linmix.convert follows the transformers {SUPPORTED_MAJOR} attention interfaces, "
                         f"installed is {transformers.__version__}; upgrade with pip install -U 'transformers>=5'")


def find_sites(model: nn.Module) -> list[Site]:
    """Every GPT2Attention / LlamaAttention in ``model``, in module order; GPT-2 cross-attention marked."""
    classes = _classes()
    if classes is None:
        return []
    sites = []
    for path, module in model.named_modules():
        family = next((name for name, cls in classes.items() if isinstance(module, cls)), None)
        if family is None:
            continue
        _check_version()
        config = module.config
        arg_names = tuple(list(inspect.signature(type(module).forward).parameters)[1:])
        extra = {"arg_names": arg_names, "layer_idx": getattr(module, "layer_idx", None)}
        if family == "gpt2":
            cross = ("GPT-2 cross-attention over encoder states: linmix mixers mix one sequence"
                     if module.is_cross_attention else "")
            sites.append(Site(path, module, family, module.embed_dim, module.num_heads, True,
                              config.n_positions, cross=cross, extra=extra))
        else:
            sites.append(Site(path, module, family, config.hidden_size, config.num_attention_heads, True,
                              config.max_position_embeddings, rotary=True, extra=extra))
    return sites


def _score_factor(module: nn.Module, head_dim: int) -> float:
    """The host's score scale relative to linmix's ``1 / sqrt(head_dim)`` (1.0 for the usual scale)."""
    return float(getattr(module, "scaling", head_dim ** -0.5)) * math.sqrt(head_dim)


def gpt2_projections(module: nn.Module) -> Projections:
    """GPT-2's Conv1D ``c_attn`` (``[D, 3D]``) and ``c_proj`` transposed into Linear layout."""
    D = module.embed_dim
    q, k, v = module.c_attn.weight.t().split(D)
    qb, kb, vb = module.c_attn.bias.split(D)
    factor = _score_factor(module, module.head_dim)
    return Projections(q * factor, k, v, module.c_proj.weight.t(), qb * factor, kb, vb, module.c_proj.bias,
                       source="c_attn, c_proj (Conv1D, transposed)")


def llama_projections(module: nn.Module, site: Site) -> Projections:
    """Llama's projections with grouped key/value heads repeated to the query heads."""
    config = module.config
    H, dh, D = config.num_attention_heads, module.head_dim, config.hidden_size
    if H * dh != D:
        raise ValueError(f"{site.path}: {H} heads x head_dim {dh} = {H * dh} differs from hidden_size {D}; "
                         "linmix mixers need n_heads * head size = d_model")
    groups = H // config.num_key_value_heads

    def repeat(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        return t.reshape(-1, dh, *t.shape[1:]).repeat_interleave(groups, dim=0).reshape(H * dh, *t.shape[1:])

    factor = _score_factor(module, dh)
    q, k, v, o = module.q_proj, module.k_proj, module.v_proj, module.o_proj
    source = "q_proj, k_proj, v_proj, o_proj" + (f" (key/value heads repeated x{groups})" if groups > 1 else "")
    return Projections(q.weight * factor, repeat(k.weight), repeat(v.weight), o.weight,
                       None if q.bias is None else q.bias * factor, repeat(k.bias), repeat(v.bias), o.bias,
                       source=source)


def build(site: Site, name: str, options: dict[str, Any], max_len: int | None) -> Built:
    """The adapter around a mixer initialised from the host's projections."""
    module = site.module
    proj = gpt2_projections(module) if site.family == "gpt2" else llama_projections(module, site)
    if site.family == "llama" and "rotary_base" in mixer_options(name) and "rotary_base" not in options:
        options = {**options, "rotary_base": _rope(site)[0]}  # the mixer takes the model's own rope base
    mixer, opts = mixer_for(site, name, options, max_len)
    initialised = load_projections(mixer, proj)
    notes = position_note(site, name, opts)
    if site.family == "llama" and opts.get("rotary"):
        notes.extend(_rope_note(site, opts.get("rotary_base", DEFAULT_BASE)))
    adapter = HFAttentionAdapter(mixer, site.path, site.extra["arg_names"], site.extra["layer_idx"])
    return Built(adapter, mixer, spec_text(name, opts), initialised, notes)


def _rope(site: Site) -> tuple[float, str]:
    """The model's rope ``(theta, type)``."""
    config = site.module.config
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    theta = params.get("rope_theta", getattr(config, "rope_theta", DEFAULT_BASE))
    return float(theta), str(params.get("rope_type", params.get("type", "default")))


def _rope_note(site: Site, base: float = DEFAULT_BASE) -> list[str]:
    """A note when the model's rope is not the mixer's (``base``, no scaling)."""
    theta, kind = _rope(site)
    if theta == float(base) and kind == "default":
        return []
    return [f"{site.path}: the model's rope (theta={theta:g}, type={kind}) is approximated by linmix's rotary "
            f"(base {float(base):g}, no scaling)"]


def _configs(model: nn.Module) -> list[Any]:
    """The model's config and generation config objects (those that have ``use_cache``)."""
    found = []
    for owner in (model, *(m for m in model.modules() if m is not model)):
        for attr in ("config", "generation_config"):
            cfg = getattr(owner, attr, None)
            if cfg is not None and hasattr(cfg, "use_cache") and all(cfg is not c for c in found):
                found.append(cfg)
    return found


def finish(model: nn.Module, replaced: list[tuple[Site, Built]]) -> list[str]:
    """Turn ``use_cache`` off: converted layers keep no KV cache."""
    for cfg in _configs(model):
        cfg.use_cache = False
    return ["use_cache=False in the model's config: converted layers keep no KV cache, so generation "
            "recomputes the prefix each step (linmix.convert.generate_streaming decodes from the mixers' states)"]


@contextlib.contextmanager
def calibrating(model: nn.Module):
    """``use_cache`` off for the calibration run (so no cache object reaches the candidate layers)."""
    configs = _configs(model)
    saved = [cfg.use_cache for cfg in configs]
    try:
        for cfg in configs:
            cfg.use_cache = False
        yield
    finally:
        for cfg, value in zip(configs, saved):
            cfg.use_cache = value
