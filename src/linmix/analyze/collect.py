"""Hidden states of a trained model on a fixed, seeded sample of its own validation tokens.

A model is given as a run directory or one of its checkpoint folders (anything ``linmix sample`` accepts).
Its ``train_config.json`` says which dataset and split it was validated on, and its saved tokenizer turns
that text into the same id stream training evaluated; the sample is ``tokens // window`` windows of
``window`` consecutive ids (``window`` = the run's block size, capped by the model's ``max_len``), drawn
without replacement from the aligned window grid with ``seed``, so models validated on the same text
see the same positions. Each window goes through the model's sequence encoder once; the states kept are
the embedding output (positional scheme applied, i.e. the first layer's input) and every layer's output,
before the final norm. At most ``tokens`` vectors per layer are ever held.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from linmix.config import TrainConfig
from linmix.data import encode_corpus, load_lm_text, load_regression, load_tokenizer
from linmix.data.tokenizers import Tokenizer
from linmix.models.blocks import SequenceEncoder
from linmix.models.pretrained import load_pretrained
from linmix.train.checkpoint import RUN_CONFIG
from linmix.train.run import load_run_config
from linmix.train.sample import find_tokenizer_dir, resolve_model_dir

#: the name of the state before the first layer
EMBEDDING = "embedding"


@dataclass
class HiddenStates:
    """What :func:`collect_hidden_states` gathered for one model.

    ``states`` is ``[L + 1, N, D]`` float32 (index 0: the embedding output, ``i``: layer ``i``'s output);
    ``ids`` the ``N`` token ids in window order; ``layer_names`` the ``L + 1`` row names.
    """

    label: str
    model_dir: Path
    run_dir: Path
    layers_spec: str
    layer_names: list[str]
    params: int
    window: int
    states: torch.Tensor
    ids: torch.Tensor
    tokenizer: Tokenizer = field(repr=False)
    config: TrainConfig = field(repr=False)

    @property
    def num_tokens(self) -> int:
        return int(self.ids.numel())


def find_run_dir(model_dir: Path) -> Path:
    """The run directory holding ``train_config.json``: the model folder itself, or the run above a
    ``checkpoints/step-N`` folder. A bare ``save_pretrained`` folder has none, and then its dataset is unknown."""
    for folder in (model_dir, model_dir.parent, model_dir.parent.parent):
        if (folder / RUN_CONFIG).is_file():
            return folder
    raise FileNotFoundError(f"{model_dir} has no {RUN_CONFIG} in it or in its run directory; analyze needs the "
                            "run folder that `linmix train` wrote, which records the dataset to sample")


def sequence_encoder(model: nn.Module) -> SequenceEncoder:
    """The shared encoder inside any linmix model (LM, classifier, multimodal regressor)."""
    for module in model.modules():
        if isinstance(module, SequenceEncoder):
            return module
    raise ValueError(f"a {type(model).__name__} has no linmix sequence encoder to analyze")


def validation_text(config: TrainConfig, data_dir: str | os.PathLike | None, run_dir: Path) -> str:
    """The validation text the run evaluated on (texts joined by newlines for classification and
    regression datasets). ``data_dir`` overrides the run's own; a missing dataset is a one-line
    ``FileNotFoundError`` that names ``--data-dir``."""
    data = config.data
    root: Any = data_dir
    if root is None and data.data_dir and Path(data.data_dir).expanduser().is_dir():
        root = data.data_dir  # the run's own data root, when it is still there from here
    try:
        if config.task == "multimodal":
            return "\n".join(load_regression(data.dataset, "valid", root, target=data.target, seed=config.run.seed,
                                             valid_fraction=data.valid_fraction).texts)
        return load_lm_text(data.dataset, "valid", root, seed=config.run.seed)
    except FileNotFoundError:
        where = f"--data-dir {root}" if data_dir is not None else "$LINMIX_DATA, the cache or the run's data_dir"
        raise FileNotFoundError(f"the validation data of {run_dir} (dataset {data.dataset!r}) was not found in "
                                f"{where}; pass --data-dir with the data root that holds it") from None


def sample_windows(n_ids: int, window: int, tokens: int, seed: int) -> tuple[int, list[int]]:
    """``(window, starts)``: up to ``tokens // window`` aligned window starts over a stream of ``n_ids``
    ids, chosen without replacement by ``seed`` and sorted. ``window`` shrinks to ``tokens`` or the stream
    when either is shorter, so at least one window and at most ``tokens`` ids are taken."""
    if tokens < 2:
        raise ValueError(f"--tokens must be at least 2, got {tokens}")
    if n_ids < 2:
        raise ValueError(f"the validation text gives {n_ids} token(s); at least 2 are needed")
    window = min(window, tokens, n_ids)
    available = n_ids // window
    count = min(available, tokens // window)
    chosen = np.random.default_rng([seed, 0xA1A]).choice(available, size=count, replace=False)
    return window, sorted(int(i) * window for i in chosen)


@torch.no_grad()
def encoder_states(encoder: SequenceEncoder, ids: torch.Tensor) -> list[torch.Tensor]:
    """The embedding output and every layer's output for ``ids: [B, T]``, read by hooks while the
    encoder runs its own forward pass (so whatever it does between layers stays as it is)."""
    captured: list[torch.Tensor] = []
    hooks = [encoder.layers[0].register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))]
    hooks += [layer.register_forward_hook(lambda _m, _a, out: captured.append(out.detach()))
              for layer in encoder.layers]
    try:
        encoder(ids)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def load_for_analysis(path: str | os.PathLike, device: str = "cpu") -> tuple[nn.Module, Path, Path, TrainConfig,
                                                                               Tokenizer]:
    """``(model in eval mode, model folder, run folder, run config, tokenizer)`` of a run or checkpoint."""
    model_dir = resolve_model_dir(path)
    run_dir = find_run_dir(model_dir)
    config = load_run_config(run_dir)
    tokenizer = load_tokenizer(find_tokenizer_dir(model_dir))
    model = load_pretrained(model_dir, map_location=device).eval()
    return model, model_dir, run_dir, config, tokenizer


def collect_hidden_states(path: str | os.PathLike, tokens: int = 2048, seed: int = 0,
                          data_dir: str | os.PathLike | None = None, label: str | None = None,
                          device: str = "cpu", progress: bool = True) -> HiddenStates:
    """Run the model of ``path`` over a seeded sample of at most ``tokens`` validation tokens of its own
    dataset and keep every layer's states (see the module doc)."""
    from tqdm.auto import tqdm

    model, model_dir, run_dir, config, tokenizer = load_for_analysis(path, device)
    encoder = sequence_encoder(model)
    ids = encode_corpus(tokenizer, validation_text(config, data_dir, run_dir))
    if ids.numel() and int(ids.max()) >= encoder.vocab_size:
        raise ValueError(f"the tokenizer of {run_dir} gives ids up to {int(ids.max())} but the model has "
                         f"{encoder.vocab_size}; they do not belong together")
    block = min(config.model.max_len or encoder.max_len, encoder.max_len)
    window, starts = sample_windows(int(ids.numel()), block, tokens, seed)
    per_layer: list[list[torch.Tensor]] = [[] for _ in range(len(encoder.layers) + 1)]
    name = label or run_dir.name
    for start in tqdm(starts, desc=f"analyze {name}", unit="window", disable=not progress, dynamic_ncols=True):
        chunk = ids[start:start + window].unsqueeze(0).to(device)
        for store, state in zip(per_layer, encoder_states(encoder, chunk)):
            store.append(state[0].float().cpu())
    states = torch.stack([torch.cat(store) for store in per_layer])
    sampled = torch.cat([ids[s:s + window] for s in starts])
    return HiddenStates(label=name, model_dir=model_dir, run_dir=run_dir, layers_spec=str(model.config.layers),
                        layer_names=[EMBEDDING, *encoder.layer_names],
                        params=sum(p.numel() for p in model.parameters()), window=window, states=states,
                        ids=sampled, tokenizer=tokenizer, config=config)
