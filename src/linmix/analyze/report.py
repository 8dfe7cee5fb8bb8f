"""``linmix analyze`` end to end: collect each model's hidden states, measure them, write figures and summaries.

The output folder gets, for one model or several compared::

    trajectories.png/.json        token paths through the layers in a shared 2-D PCA, one panel per model
    cosine_similarity.png/.json   pairwise cosine similarity per layer index, the models overlaid
    participation_ratio.png/.json effective dimensionality per layer, a line per model
    cka.png/.json                 layer-to-layer linear CKA, a heat map per model
    summary.json                  per model: label, params, and every number above but the histograms
    README.md                     what the figures are and the command that made them

Every model is collected and measured before anything is written, so a bad checkpoint or missing data
leaves no half-filled folder. Models are measured one at a time and only their numbers kept.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from linmix.analyze.collect import HiddenStates, collect_hidden_states, find_run_dir
from linmix.analyze.metrics import cka_matrix, cosine_histogram, participation_ratio, shared_pca
from linmix.analyze.plots import plot_cka, plot_cosine_histograms, plot_participation, plot_trajectories
from linmix.models.pretrained import read_config, write_json_atomic
from linmix.train.sample import resolve_model_dir

#: the figures, by file stem, with the line README.md gives each
FIGURES = {
    "trajectories": "PCA trajectories: each model's token representations projected on the top two principal "
                    "directions of all its layers together; a few tokens' paths from the embedding (square) "
                    "through every layer to the last (star)",
    "cosine_similarity": "pairwise cosine similarity of sampled token pairs, embedding output and each "
                         "layer's output, the models overlaid per layer index",
    "participation_ratio": "effective dimensionality per layer: participation ratio (sum lambda)^2 / "
                           "sum lambda^2 of the covariance spectrum, a line per model",
    "cka": "linear CKA (Kornblith et al. 2019) between every pair of layers, a heat map per model",
}
#: tokens whose trajectories are drawn, and background tokens per layer in that figure
HIGHLIGHT, CLOUD = 6, 256


def model_labels(paths: list[str | os.PathLike]) -> list[str]:
    """A distinct label per model: the folder name given (``run/step-N`` for a run's checkpoint folder);
    where two share it, the layer spec; where that is shared too, the spec with ``#k`` appended. Checks
    every path before any model is loaded."""
    names, specs = [], []
    for path in paths:
        model_dir = resolve_model_dir(path)
        run_dir = find_run_dir(model_dir)
        given = Path(path).resolve()
        names.append(f"{run_dir.name}/{given.name}" if given != run_dir.resolve() else given.name)
        specs.append(str(read_config(model_dir).get("layers")))
    labels = [name if names.count(name) == 1 else spec for name, spec in zip(names, specs)]
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if labels.count(label) > 1:
            seen[label] = seen.get(label, 0) + 1
            labels[i] = f"{label}#{seen[label]}"
    return labels


def measure(hidden: HiddenStates, seed: int, highlight: int = HIGHLIGHT) -> dict[str, Any]:
    """Every number the figures and summary need from one model's states (plain lists)."""
    states = hidden.states
    n = states.shape[1]
    hists = [cosine_histogram(layer, seed=seed) for layer in states]
    pca = shared_pca(states)
    g = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(n, generator=g)[:highlight].tolist()
    cloud = torch.randperm(n, generator=g)[:CLOUD]
    points = pca["points"]
    tokens = [{"index": i, "text": hidden.tokenizer.decode([int(hidden.ids[i])]),
               "path": points[:, i].tolist()} for i in chosen]
    return {
        "label": hidden.label, "checkpoint": str(hidden.model_dir), "run_dir": str(hidden.run_dir),
        "dataset": hidden.config.data.dataset, "layers": hidden.layers_spec, "layer_names": hidden.layer_names,
        "params": hidden.params, "tokens": hidden.num_tokens, "window": hidden.window,
        "participation_ratio": [participation_ratio(layer) for layer in states],
        "cosine_mean": [h["mean"] for h in hists], "cosine_std": [h["std"] for h in hists],
        "cka": cka_matrix(states),
        "histograms": hists,
        "trajectories": {"layer_names": hidden.layer_names, "explained": pca["explained"].tolist(),
                         "cloud": points[:, cloud].tolist(), "tokens": tokens},
    }


def analyze(checkpoints: list[str | os.PathLike], out: str | os.PathLike, tokens: int = 2048, seed: int = 0,
            data_dir: str | os.PathLike | None = None, progress: bool = True,
            command: str | None = None) -> dict[str, Any]:
    """Analyze every model of ``checkpoints`` (run directories or checkpoint folders; the first is the
    reference, the rest are compared with it) and write the folder ``out`` described in the module doc.
    Returns the summary written as ``summary.json``."""
    if not checkpoints:
        raise ValueError("give at least one --checkpoint")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 2:
        raise ValueError(f"--tokens must be at least 2, got {tokens!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory")
    labels = model_labels(checkpoints)
    measured = []
    for path, label in zip(checkpoints, labels):
        hidden = collect_hidden_states(path, tokens=tokens, seed=seed, data_dir=data_dir, label=label,
                                       progress=progress)
        measured.append(measure(hidden, seed))
        del hidden
    out.mkdir(parents=True, exist_ok=True)
    names = {m["label"]: m["layer_names"] for m in measured}
    plot_trajectories({m["label"]: m["trajectories"] for m in measured}, out / "trajectories.png")
    plot_cosine_histograms({m["label"]: m["histograms"] for m in measured}, names, out / "cosine_similarity.png")
    plot_participation({m["label"]: m["participation_ratio"] for m in measured}, names,
                       out / "participation_ratio.png")
    plot_cka({m["label"]: m["cka"] for m in measured}, names, out / "cka.png")
    summary = {"command": command, "tokens": tokens, "seed": seed, "figures": sorted(f"{s}.png" for s in FIGURES),
               "models": [{k: v for k, v in m.items() if k not in ("histograms", "trajectories")}
                          for m in measured]}
    write_json_atomic(out / "summary.json", summary)
    (out / "README.md").write_text(readme(summary))
    return summary


def readme(summary: dict[str, Any]) -> str:
    """The short README.md of an analysis folder: the command, the models, the figures."""
    lines = ["# Representation analysis", ""]
    if summary.get("command"):
        lines += ["Made by:", "", "```", summary["command"], "```", ""]
    lines += [f"Hidden states of at most {summary['tokens']} validation tokens per model (seed {summary['seed']}), "
              "taken at the embedding output and after every layer (before the final norm).", "",
              "| model | layers | params | tokens | participation ratio (emb -> last) | mean cosine (emb -> last) |",
              "|---|---|---|---|---|---|"]
    for m in summary["models"]:
        pr, cos = m["participation_ratio"], m["cosine_mean"]
        lines.append(f"| {m['label']} | `{m['layers']}` | {m['params']:,} | {m['tokens']} | "
                     f"{pr[0]:.1f} -> {pr[-1]:.1f} | {cos[0]:.2f} -> {cos[-1]:.2f} |")
    lines += ["", "Figures (each with a JSON of its numbers beside it, same name):", ""]
    lines += [f"- `{stem}.png`: {text}." for stem, text in FIGURES.items()]
    lines += ["- `summary.json`: per model its label, parameters, per-layer participation ratio, mean and std "
              "of the pairwise cosine similarity, and the CKA matrix.", ""]
    return "\n".join(lines)

