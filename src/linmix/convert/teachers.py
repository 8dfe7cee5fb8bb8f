"""What :func:`linmix.convert` remembers on each layer it installs: where it went, what it replaced and,
with ``keep_teacher=True``, the original attention module itself, frozen, as the layer's teacher.

Distillation (:mod:`linmix.distill`) needs both the new mixer and the attention it replaced, run on the
same input: attention transfer (LoLCATs, arXiv 2410.10254; Hedgehog, arXiv 2402.04347) fits each new mixer
to its teacher's outputs. The record is a plain attribute of the installed module (the adapter, or the
linmix mixer that took the old one's place), deliberately not a registered submodule: the converted
model's ``state_dict``, parameters, parameter count and ``save_pretrained`` stay exactly those of the
converted model, and the teacher never receives gradients or optimizer state. The price is that
``model.to(...)`` does not move a teacher; :func:`place_teacher` moves it beside its student when it is
needed. :func:`drop_teachers` releases them (their memory) once distillation is done.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from linmix.convert.adapters import HFAttentionAdapter, MultiheadAttentionAdapter
from linmix.mixers.base import Mixer

#: the attribute of an installed module that holds its :class:`Conversion`
ATTR = "linmix_conversion"


@dataclass
class Conversion:
    """One replaced attention layer, as recorded on the module installed in its place.

    Attributes:
        path: the module path at conversion time.
        old: the class name of the attention module that was replaced.
        initialised: which mixer weights were copied from the old projections (``""``: fresh init).
        teacher: the frozen original attention module (``convert(..., keep_teacher=True)``), else None.
    """

    path: str
    old: str
    initialised: str = ""
    teacher: nn.Module | None = None


class Converted(NamedTuple):
    """A converted layer found in a model: its current path, the installed module, its mixer, the record."""

    path: str
    module: nn.Module
    mixer: Mixer
    record: Conversion


def mark(installed: nn.Module, path: str, old: nn.Module, initialised: str, keep_teacher: bool) -> None:
    """Record the conversion on ``installed``; with ``keep_teacher`` the ``old`` module is frozen (no
    gradients, eval mode) and kept as the teacher."""
    teacher = None
    if keep_teacher:
        teacher = old.requires_grad_(False).eval()
    installed.__dict__[ATTR] = Conversion(path, type(old).__name__, initialised, teacher)


def mixer_of(installed: nn.Module) -> Mixer:
    """The linmix mixer inside an installed module (an adapter's ``mixer``, or the mixer itself)."""
    if isinstance(installed, (MultiheadAttentionAdapter, HFAttentionAdapter)):
        return installed.mixer
    return installed  # type: ignore[return-value]


def converted_layers(model: nn.Module, need_teachers: bool = False) -> list[Converted]:
    """Every layer :func:`linmix.convert` installed in ``model``, in module order.

    ``need_teachers``: a ``ValueError`` unless every one of them kept its teacher. A model without any
    converted layer is a ``ValueError`` either way.
    """
    found = [Converted(path, m, mixer_of(m), m.__dict__[ATTR]) for path, m in model.named_modules()
             if isinstance(m.__dict__.get(ATTR), Conversion)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no layer converted by linmix.convert in this session; "
                         "convert it first (model, report = linmix.convert(model, mixer=..., keep_teacher=True))")
    if need_teachers:
        missing = [c.path for c in found if c.record.teacher is None]
        if missing:
            raise ValueError(f"{missing[0]} kept no teacher; convert with keep_teacher=True to distill "
                             "(the original attention modules are needed beside the new mixers)")
    return found


def place_teacher(layer: Converted) -> nn.Module:
    """The layer's teacher on the device and floating dtype of its mixer (moved there if it is not)."""
    teacher = layer.record.teacher
    if teacher is None:
        raise ValueError(f"{layer.path} kept no teacher; convert with keep_teacher=True")
    param = next(layer.mixer.parameters(), None)
    if param is not None:
        current = next(teacher.parameters(), None)
        if current is None or current.device != param.device or current.dtype != param.dtype:
            teacher.to(device=param.device, dtype=param.dtype if param.is_floating_point() else None)
    return teacher.eval()


def drop_teachers(model: nn.Module) -> int:
    """Release every kept teacher of ``model`` (the conversion records stay); returns how many."""
    count = 0
    for module in model.modules():
        record = module.__dict__.get(ATTR)
        if isinstance(record, Conversion) and record.teacher is not None:
            record.teacher = None
            count += 1
    return count

