"""The pieces every converter family shares: a found attention module (:class:`Site`), the old projection
weights in one layout (:class:`Projections`), and building the linmix mixer initialised from them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from linmix.mixers.base import Mixer
from linmix.mixers.registry import build_mixer, mixer_options


@dataclass
class Site:
    """One attention module found in a model.

    Attributes:
        path: dotted module path (``""`` never: the root module is not an attention layer).
        module: the attention module itself.
        family: the converter that found it (``torch``, ``gpt2``, ``llama``, ``linmix``).
        d_model, n_heads: the host's width and query heads (the mixer gets ``n_heads`` when it takes it).
        causal: whether the replacement must be causal (the host's own masking, or the caller's choice).
        max_len: the longest sequence the host was built for (the mixer's ``max_len``).
        rotary: the host rotates queries and keys by position (the mixer gets ``rotary=True`` if it takes it).
        cross: why the module cannot be replaced (cross-attention); empty for a self-attention layer.
        extra: family-specific facts the builder needs (the host's forward signature, a config entry).
    """

    path: str
    module: nn.Module
    family: str
    d_model: int
    n_heads: int
    causal: bool
    max_len: int
    rotary: bool = False
    cross: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Projections:
    """Query/key/value/output projections in ``nn.Linear`` layout (``weight: [out, in]``), with the names
    they came from for the report. Biases may be ``None`` (copied as zeros)."""

    q_weight: torch.Tensor
    k_weight: torch.Tensor
    v_weight: torch.Tensor
    o_weight: torch.Tensor
    q_bias: torch.Tensor | None = None
    k_bias: torch.Tensor | None = None
    v_bias: torch.Tensor | None = None
    o_bias: torch.Tensor | None = None
    source: str = "q, k, v, o"


@dataclass
class Built:
    """A replacement ready to install: the module that goes where the attention was (an adapter or the
    mixer itself), the mixer inside it, its layer spec and what was initialised from the old weights
    (``extra``: what the family's ``finish`` step needs, e.g. the layer spec for a linmix model's config)."""

    module: nn.Module
    mixer: Mixer
    spec: str
    initialised: str = ""
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def mixer_for(site: Site, name: str, options: dict[str, Any], max_len: int | None = None) -> tuple[Mixer, dict]:
    """Build mixer ``name`` for ``site``: the host's heads and rotary positions where the mixer takes them
    (``options`` win), on the host's device and dtype. Returns ``(mixer, options used)``; a
    ``ValueError`` names the module path."""
    opts = dict(options)
    accepted = mixer_options(name)
    if "n_heads" in accepted:
        opts.setdefault("n_heads", site.n_heads)
    if site.rotary and "rotary" in accepted:
        opts.setdefault("rotary", True)
    try:
        mixer = build_mixer(name, d_model=site.d_model, max_len=max_len or site.max_len, causal=site.causal, **opts)
    except ValueError as err:
        raise ValueError(f"{site.path}: {err}") from None
    return place_like(mixer, site.module), opts


def place_like(mixer: Mixer, host: nn.Module) -> Mixer:
    """``mixer`` moved to the device and floating dtype of ``host``'s first parameter (if any)."""
    param = next(host.parameters(), None)
    if param is None:
        return mixer
    return mixer.to(device=param.device, dtype=param.dtype if param.is_floating_point() else None)


def spec_text(name: str, opts: dict[str, Any]) -> str:
    """``name(key=value, ...)`` for the report."""
    inner = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in opts.items())
    return f"{name}({inner})" if inner else name


def position_note(site: Site, name: str, opts: dict[str, Any]) -> list[str]:
    """A note when the host's rotary positions are not reproduced by the mixer."""
    if site.rotary and not opts.get("rotary", False):
        return [f"{site.path}: the model's rotary positions are not applied by {name} (it takes no rotary option "
                "or rotary=False was given); order then comes from causality alone"]
    return []


@torch.no_grad()
def load_projections(mixer: nn.Module, proj: Projections) -> str:
    """Copy ``proj`` into the mixer's fused ``qkv`` (or separate ``q``, ``k``, ``v``) and ``out`` Linears.

    Returns what was copied for the report, or ``""`` when the mixer has no such pieces of matching shape
    (it then keeps its own fresh initialisation).
    """
    out = getattr(mixer, "out", None)
    if not isinstance(out, nn.Linear) or out.weight.shape != proj.o_weight.shape:
        return ""
    pieces = [(proj.q_weight, proj.q_bias), (proj.k_weight, proj.k_bias), (proj.v_weight, proj.v_bias)]
    qkv = getattr(mixer, "qkv", None)
    if isinstance(qkv, nn.Linear):
        weight = torch.cat([w for w, _ in pieces])
        if qkv.weight.shape != weight.shape:
            return ""
        _copy(qkv, weight, torch.cat([_bias(b, w) for w, b in pieces]))
        copied = "qkv, out"
    else:
        targets = [getattr(mixer, n, None) for n in ("q", "k", "v")]
        if not all(isinstance(t, nn.Linear) and t.weight.shape == w.shape for t, (w, _) in zip(targets, pieces)):
            return ""
        for target, (w, b) in zip(targets, pieces):
            _copy(target, w, _bias(b, w))
        copied = "q, k, v, out"
    _copy(out, proj.o_weight, _bias(proj.o_bias, proj.o_weight))
    return f"{copied} <- {proj.source}"


def _bias(bias: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor:
    return torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device) if bias is None else bias


def _copy(linear: nn.Linear, weight: torch.Tensor, bias: torch.Tensor) -> None:
    linear.weight.copy_(weight.detach())
    if linear.bias is not None:
        linear.bias.copy_(bias.detach())
