"""Low-rank adapters (LoRA) in plain PyTorch, for the recovery stage: no ``peft`` dependency.

A LoRA'd weight reads ``W + (alpha / r) * B A`` with ``A: [r, in]`` small random and ``B: [out, r]``
zero, so the model computes exactly what it did until ``B`` moves; ``W`` is frozen and only ``A`` and
``B`` train. It is attached as a ``torch.nn.utils.parametrize`` parametrization of the weight rather
than a module around the layer, because several mixers read their projections' ``.weight`` directly
(fused q/k/v, custom kernels): those reads see the adapted weight too. :func:`merge_lora` folds ``B A``
into ``W`` and removes the parametrization, leaving plain layers (so ``save_pretrained`` writes the
model's usual keys).

What gets adapters (:func:`add_lora`): the projections of each converted mixer that
:func:`linmix.convert` copied from the attention it replaced (``qkv`` or ``q``/``k``/``v``, and
``out``), as LoLCATs (arXiv 2410.10254) adapts the kept attention projections; the mixer's other
parameters (feature maps, decays, kernels) keep training in full.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from linmix.convert.teachers import converted_layers

#: the mixer attributes that hold projections copied from the replaced attention
PROJECTIONS = ("qkv", "q", "k", "v", "out")


class LoRA(nn.Module):
    """The parametrization ``W -> W + scale * B A`` of one ``[out, in]`` weight (B zero at first)."""

    def __init__(self, weight: torch.Tensor, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        out_features, in_features = weight.shape
        kw = {"device": weight.device, "dtype": weight.dtype}
        self.lora_a = nn.Parameter(torch.empty(rank, in_features, **kw))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.lora_b = nn.Parameter(torch.zeros(out_features, rank, **kw))
        self.rank, self.scale = rank, (alpha if alpha is not None else rank) / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.lora_b @ self.lora_a)


def lora_targets(model: nn.Module) -> dict[str, nn.Linear]:
    """``{module path: Linear}`` of the converted mixers' copied projections (see the module doc)."""
    found = {}
    for layer in converted_layers(model):
        if not layer.record.initialised:
            continue  # the mixer did not take the old projections: nothing of them to adapt
        prefix = layer.path + ("" if layer.mixer is layer.module else ".mixer")
        for name in PROJECTIONS:
            linear = getattr(layer.mixer, name, None)
            if isinstance(linear, nn.Linear):
                found[f"{prefix}.{name}"] = linear
    return found


def add_lora(model: nn.Module, rank: int, alpha: float | None = None) -> list[str]:
    """Attach rank-``rank`` adapters to :func:`lora_targets`; the adapted paths. The base weights are
    left trainable or not as they were: the recovery stage trains the adapters instead of them.

    Already adapted layers are left as they are (so a resumed run can call it again)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"lora_rank must be a positive integer, got {rank!r}")
    targets = lora_targets(model)
    if not targets:
        raise ValueError("no converted mixer has projections copied from the attention it replaced; "
                         "lora_rank > 0 has nothing to adapt (use lora_rank=0)")
    for path, linear in targets.items():
        if parametrize.is_parametrized(linear, "weight"):
            continue
        if rank > min(linear.weight.shape):
            raise ValueError(f"lora_rank={rank} exceeds {path}'s smallest dimension {min(linear.weight.shape)}")
        parametrize.register_parametrization(linear, "weight", LoRA(linear.weight, rank, alpha))
    return list(targets)


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every LoRA ``A``/``B`` of ``model`` by name."""
    return {n: p for n, p in model.named_parameters() if n.endswith((".lora_a", ".lora_b"))
            and ".parametrizations." in n}


def lora_bases(model: nn.Module) -> set[int]:
    """``id`` of every weight under a LoRA parametrization (frozen while the adapters train)."""
    return {id(m.parametrizations.weight.original) for m in model.modules() if _has_lora(m)}


def _has_lora(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight") and any(isinstance(p, LoRA)
                                                                  for p in module.parametrizations.weight)


@torch.no_grad()
def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its weight (``W + scale * B A``) and remove it; returns how many."""
    count = 0
    for module in list(model.modules()):
        if _has_lora(module):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            count += 1
    return count
