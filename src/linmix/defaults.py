"""The defaults that depend on the task: the Python API's model defaults, ``linmix train``'s CPU-sized
presets and what ``linmix compare`` changes in them; and those that follow other fields (:func:`fill_derived`).

A field whose default is the same for every task keeps it in its dataclass (:mod:`linmix.config`); a
field whose default depends on the task is ``None`` there and takes its value from here when the config
is resolved. Nothing else holds a default.
"""
from __future__ import annotations

from typing import Any

#: what a model built without a training preset defaults to (the Python API's defaults)
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "lm": dict(layers="summation*3,attention", max_len=1024, d_model=256),
    "classify": dict(layers="summation", max_len=512, d_model=256),
    "multimodal": dict(layers="summation", max_len=512, d_model=256),
}

#: mixer options that ``arch="bare"`` (the summation papers' embedding -> mixer -> pool classifier) defaults to,
#: where neither the layer spec nor ``mixer_options`` sets them: the papers' raw sum. In a residual stack
#: summation divides by the token count (its own default), because a growing raw sum drowns the residual
#: stream; a bare stack has no residual, and the raw sum classifies better there (results/ablate: 20 Newsgroups
#: 0.652 vs 0.619 with the count, Reuters R52 0.944 vs 0.898). :meth:`ModelConfig.resolved` writes these into
#: ``mixer_options``, so a saved config.json names them.
BARE_MIXER_OPTIONS: dict[str, dict[str, Any]] = {"summation": {"normalize": "none"}}

#: what a config.json saved before :data:`BARE_MIXER_OPTIONS` existed was trained with (a bare summation
#: layer then divided by the token count); loading such a file pins these, so its model is unchanged
LEGACY_BARE_MIXER_OPTIONS: dict[str, dict[str, Any]] = {"summation": {"normalize": "count"}}

#: the training presets of ``linmix train TASK``: CPU-sized runs, per section
TASK_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "lm": {
        "model": dict(layers="summation*3,attention", d_model=128, max_len=128),
        "data": dict(dataset="tinyshakespeare", tokenizer="char", batch_size=32),
        "optim": dict(lr=3e-3, warmup=100),
        "run": dict(steps=1500, eval_every=250, eval_batches=20, patience=0),
    },
    "classify": {
        "model": dict(layers="summation*2", d_model=128, max_len=256),
        "data": dict(dataset="ag_news", tokenizer="word", vocab_size=10_000, batch_size=32),
        "optim": dict(lr=1e-3, warmup=100),
        "run": dict(epochs=2, eval_every=200, eval_batches=40, patience=5),
    },
    "multimodal": {
        "model": dict(layers="summation*2", d_model=128, max_len=128),
        "data": dict(dataset="clothing_reviews", tokenizer="word", vocab_size=10_000, batch_size=32),
        "optim": dict(lr=1e-3, warmup=100),
        "run": dict(epochs=3, eval_every=200, eval_batches=40, patience=5),
    },
}

#: what ``linmix compare TASK`` changes in the training preset (the README's ~10-minute main job for LMs) and its
#: default candidates and seeds (1 where not given)
COMPARE_DEFAULTS: dict[str, dict[str, Any]] = {
    # the summation papers' stacks, spectral and the best spectral-paper hybrid of results/compare/hybrids-*,
    # at block 256 (where linear mixers start to pay), batch 12, lr 1e-3, 800 steps: about 10 minutes on 2 cores
    "lm": {"candidates": ["attention*4", "summation*4", "summation*3,attention", "spectral*4",
                          "spectral*3,local_attention(window=32)"],
           "overrides": {"model.max_len": 256, "data.batch_size": 12, "optim.lr": 1e-3, "run.steps": 800,
                         "run.eval_every": 200, "run.patience": 0}},
    "classify": {"candidates": ["attention", "summation", "summation,attention"],
                 "overrides": {"run.patience": 0}},
    # the summation papers' fusion claim: ridge on the numeric inputs, a text-only branch, both mixers with
    # both fusions (attention+concat, the first pure-attention one, is the baseline) and spectral+add; early
    # stopping on a seeded 10% of train (100 batches of 32 cover the whole slice), test split held out
    "multimodal": {"candidates": ["ridge", "summation+text", "attention+concat", "summation+add",
                                  "summation+concat", "attention+add", "spectral+add"],
                   "seeds": 3,
                   "overrides": {"data.valid_fraction": 0.1, "run.eval_batches": 100}},
}

#: run fields that may differ from the saved config on ``--resume`` (they do not change the result)
RESUME_MUTABLE = ("run.device", "data.data_dir", "run.progress", "run.out")


def fill_bare_options(layers: str | list[Any], mixer_options: dict[str, dict[str, Any]],
                      defaults: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """``mixer_options`` with ``defaults`` (:data:`BARE_MIXER_OPTIONS`) added for every mixer of ``layers``
    (a layer string or parsed layer specs) that has a layer setting neither inline; options already given win."""
    if isinstance(layers, str):
        from linmix.models.spec import parse_layer_specs

        layers = parse_layer_specs(layers)
    defaults = BARE_MIXER_OPTIONS if defaults is None else defaults
    out = {name: dict(opts) for name, opts in mixer_options.items()}
    for name, values in defaults.items():
        for key, value in values.items():
            if any(s.name == name and key not in s.options for s in layers):
                out.setdefault(name, {}).setdefault(key, value)
    return out


def fill_derived(cfg: Any) -> None:
    """Fill the defaults of a :class:`~linmix.config.TrainConfig` that follow its other fields: checkpoints
    as often as evaluations, and the LR schedule: warmup + cosine, but warmup + constant under an LR
    controller, which anneals by itself (so a controlled run competes with cosine instead of riding on it)."""
    if cfg.run.checkpoint_every is None:
        cfg.run.checkpoint_every = cfg.run.eval_every
    if cfg.optim.schedule is None:
        cfg.optim.schedule = "constant" if cfg.optim.lr_controller != "none" else "cosine"
