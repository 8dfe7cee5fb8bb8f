""":func:`convert`: swap the attention layers of an existing model for a linmix mixer, in place.

It plans first and applies after: every attention module is found, every replacement is built and
initialised (any problem is a ``ValueError`` naming the module path), and only then are modules swapped,
so a failed conversion leaves the model untouched. Families: ``torch.nn.MultiheadAttention``
(:mod:`linmix.convert.torch_mha`), linmix's own blocks (:mod:`linmix.convert.linmix_blocks`), Hugging Face
GPT-2 and Llama (:mod:`linmix.convert.hf`). Residuals, norms and feed-forwards are untouched.
"""
from __future__ import annotations

import math
from typing import Any

from torch import nn

from linmix.convert import hf, linmix_blocks, torch_mha
from linmix.convert.adapters import HFAttentionAdapter, MultiheadAttentionAdapter
from linmix.convert.common import Built, Site
from linmix.convert.keep import auto_count, calibration_scores, resolve_keep
from linmix.convert.report import ConversionReport, Replacement
from linmix.convert.teachers import mark
from linmix.mixers.base import Mixer
from linmix.mixers.registry import check_mixer_name

FAMILIES = {"torch": torch_mha, "linmix": linmix_blocks, "gpt2": hf, "llama": hf}
#: class-name endings that mark a module as attention the converter must understand
ATTENTION_SUFFIXES = ("Attention", "Attn")


def convert(model: nn.Module, mixer: str = "linear_attention", keep: Any = None, *, calibration: Any = None,
            auto_keep: int | float = 0.25, causal: bool | None = None, max_len: int | None = None,
            cross_attention: str = "keep", freeze: bool = False, keep_teacher: bool = False,
            scores: dict[str, float] | None = None, **options: Any) -> tuple[nn.Module, ConversionReport]:
    """Replace the model's attention layers by linmix mixer ``mixer`` (built with ``**options``), in place.

    Args:
        model: a module holding ``torch.nn.MultiheadAttention`` self-attention (e.g. in
            ``nn.TransformerEncoder``/``Decoder`` layers), Hugging Face ``GPT2Attention``/``LlamaAttention``
            layers, or linmix ``attention``/``local_attention`` mixers.
        mixer: a registered mixer name. Each mixer is built with the host's width, heads (``n_heads``,
            when it takes it), causality, ``max_len`` and, for Llama, ``rotary=True`` when it takes it;
            ``options`` override these. Its q/k/v/out are copied from the old weights where it has them.
        keep: layers left as softmax attention: None, a list of indices, a ratio in (0, 1) or ``"auto"``
            (see :mod:`linmix.convert.keep`); ``calibration`` and ``auto_keep`` are used by ``"auto"``.
        causal: for MultiheadAttention layers only (they do not know how they are called): None = causal
            for decoder self-attention, bidirectional otherwise. Other hosts keep their own causality.
        max_len: the mixers' ``max_len`` for torch and Hugging Face hosts (default: the host's positions, or
            2048 for MultiheadAttention); a linmix model keeps its own.
        cross_attention: ``"keep"`` (cross-attention is left as it is and listed as kept); ``"replace"``
            is refused, since a linmix mixer mixes one sequence.
        freeze: make every parameter except the new mixers' non-trainable (for attention transfer).
        keep_teacher: keep each replaced attention module, frozen, beside its new mixer (outside the model's
            parameters and ``state_dict``; see :mod:`linmix.convert.teachers`), for :mod:`linmix.distill`.
        scores: with ``keep="auto"``, rank the layers by these ``{path: score}`` (largest kept) instead of
            a calibration run, e.g. the per-layer losses :func:`linmix.distill.attention_transfer` returns
            for a fully converted copy: the layers the mixer still imitates worst after training.

    Returns:
        ``(model, report)``: the same model object, converted, and a :class:`ConversionReport`.

    Raises:
        ValueError: an unknown mixer or option, an attention class no converter handles, cross-attention
            asked to be replaced, a bad ``keep``; raised before anything in the model is modified.
    """
    check_mixer_name(mixer)
    if cross_attention not in ("keep", "replace"):
        raise ValueError(f"cross_attention must be 'keep' or 'replace', got {cross_attention!r}")
    sites = find_sites(model, causal)
    cross = [s for s in sites if s.cross]
    if cross and cross_attention == "replace":
        raise ValueError(f"{cross[0].path}: cannot replace cross-attention ({cross[0].cross}); "
                         "use cross_attention='keep'")
    candidates = [s for s in sites if not s.cross]
    if not candidates:
        raise ValueError(f"no attention layer to convert in {type(model).__name__}; linmix.convert handles "
                         "torch.nn.MultiheadAttention, transformers GPT-2/Llama attention and linmix attention")
    if causal is not None:
        for s in candidates:
            if s.family != "torch" and s.causal != bool(causal):
                raise ValueError(f"{s.path}: causal={causal} conflicts with the host ({s.family}, causal={s.causal});"
                                 " causal= applies to torch.nn.MultiheadAttention layers only")
    paths = [s.path for s in candidates]
    if scores is not None and keep != "auto":
        raise ValueError("scores= ranks the layers for keep='auto'; pass keep='auto' with it")
    report = ConversionReport(mixer=mixer, params_before=count_parameters(model),
                              modules={s.path: type(s.module).__name__ for s in sites})
    if isinstance(keep, str):
        if keep != "auto":
            raise ValueError(f"keep must be None, a list of layer indices, a ratio in (0, 1) or 'auto'; got {keep!r}")
        count = auto_count(auto_keep, len(candidates))
        if scores is not None:
            report.scores = given_scores(scores, paths)
            why = "keep='auto': largest of the given scores"
        else:
            builds = {s.path: build(s, mixer, options, max_len, model) for s in candidates}
            contexts = list({id(FAMILIES[s.family]): FAMILIES[s.family].calibrating for s in candidates}.values())
            report.scores = calibration_scores(model, {s.path: s.module for s in candidates},
                                               {p: b.module for p, b in builds.items()}, calibration, contexts)
            why = "keep='auto': largest relative MSE on the calibration input"
        ranked = sorted(range(len(candidates)), key=lambda i: -report.scores[paths[i]])
        kept = sorted(ranked[:count])
        if scores is not None:
            builds = {s.path: build(s, mixer, options, max_len, model)
                      for i, s in enumerate(candidates) if i not in kept}
    else:
        kept, why = resolve_keep(keep, len(candidates), paths)
        builds = {s.path: build(s, mixer, options, max_len, model)
                  for i, s in enumerate(candidates) if i not in kept}
    # ------------------------------------------------------------------ apply (nothing above modified the model)
    replaced: list[tuple[Site, Built]] = []
    for i, site in enumerate(candidates):
        if i in kept:
            report.kept[site.path] = why
            continue
        built = builds[site.path]
        install(model, site, built.module)
        mark(built.module, site.path, site.module, built.initialised, keep_teacher)
        replaced.append((site, built))
        report.replaced.append(Replacement(site.path, type(site.module).__name__, built.spec, built.initialised))
        report.notes.extend(built.notes)
    for site in cross:
        report.kept[site.path] = site.cross
    for family in dict.fromkeys(FAMILIES[s.family] for s, _ in replaced):
        report.notes.extend(family.finish(model, [(s, b) for s, b in replaced if FAMILIES[s.family] is family]))
    if freeze:
        new = {id(p) for _, b in replaced for p in b.mixer.parameters()}
        for p in model.parameters():
            p.requires_grad_(id(p) in new)
        report.notes.append("freeze=True: only the new mixers' parameters are trainable")
    if keep_teacher and replaced:
        report.notes.append("keep_teacher=True: each replaced attention module is kept, frozen, beside its mixer "
                            "(linmix.distill uses it; linmix.convert.teachers.drop_teachers releases it)")
    report.params_after = count_parameters(model)
    return model, report


def find_sites(model: nn.Module, causal: bool | None) -> list[Site]:
    """Every attention module of every family, in module order; ``ValueError`` naming the first attention
    module no family handles."""
    adapters = {p for p, m in model.named_modules() if isinstance(m, (MultiheadAttentionAdapter, HFAttentionAdapter))}
    sites = torch_mha.find_sites(model, causal) + hf.find_sites(model) + linmix_blocks.find_sites(model, adapters)
    if any(s.path == "" for s in sites):
        raise ValueError(f"the model itself is an attention module ({type(model).__name__}); convert the module "
                         "that holds it, so the replacement has a place to go")
    claimed = {s.path for s in sites}
    for path, module in model.named_modules():
        if path in claimed or any(path.startswith(p + ".") for p in claimed | adapters) or path in adapters:
            continue
        name = type(module).__name__
        if name.endswith(ATTENTION_SUFFIXES) and not isinstance(module, Mixer):
            raise ValueError(f"{path}: no converter for attention class {name}; linmix.convert handles "
                             "torch.nn.MultiheadAttention, transformers GPT2Attention/LlamaAttention and linmix "
                             "attention mixers")
    order = {path: i for i, (path, _) in enumerate(model.named_modules())}
    return sorted(sites, key=lambda s: order[s.path])


def given_scores(scores: dict[str, float], paths: list[str]) -> dict[str, float]:
    """``scores`` checked to hold a finite number for every candidate path (``ValueError`` naming the first
    that has none)."""
    if not isinstance(scores, dict):
        raise ValueError(f"scores must be a dict {{module path: score}}, got {type(scores).__name__}")
    out = {}
    for path in paths:
        value = scores.get(path)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"scores has no number for {path}; keep='auto' with scores= needs one for every "
                             f"attention layer ({', '.join(paths)})")
        out[path] = float(value)
    return out


def build(site: Site, mixer: str, options: dict[str, Any], max_len: int | None, model: nn.Module) -> Built:
    """The replacement for one site, from its family (nothing in the model changes)."""
    if site.family == "linmix":
        return linmix_blocks.build(site, mixer, options, max_len, model)
    return FAMILIES[site.family].build(site, mixer, options, max_len)


def install(model: nn.Module, site: Site, new: nn.Module) -> None:
    """Put ``new`` where ``site.module`` was, in the same training mode."""
    parent_path, _, attr = site.path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    new.train(site.module.training)
    setattr(parent, attr, new)


def count_parameters(model: nn.Module) -> int:
    """Parameters of ``model``, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters())
