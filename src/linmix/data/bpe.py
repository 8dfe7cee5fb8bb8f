"""Tokenizers backed by Hugging Face ``tokenizers``: trained byte-level BPE and pretrained hub tokenizers.

Both are saved as the ``tokenizers`` library's own ``tokenizer.json`` beside linmix's
``tokenizer_config.json`` (see :mod:`linmix.data.tokenizers` for the common interface).

* :class:`BPETokenizer` — byte-level BPE trained on the training split; exact round trip on any
  text, no unknowns.
* :class:`HubTokenizer` / :func:`hub_tokenizer` — a pretrained ``tokenizer.json`` from the Hugging Face Hub.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizerObject
from tokenizers import decoders, models, pre_tokenizers, trainers

from linmix.data.sources import hf_endpoint, offline_reason, url_reachable
from linmix.data.tokenizers import PAD, PathLike, Tokenizer

HF_FILE = "tokenizer.json"
DEFAULT_BPE_VOCAB = 8_192
HUB_TIMEOUT_S = 10.0


class _HFBacked(Tokenizer):
    """A wrapper around a Hugging Face ``tokenizers.Tokenizer``, saved as its ``tokenizer.json``."""

    def __init__(self, tokenizer: HFTokenizerObject, pad_token: str | None = None,
                 unk_token: str | None = None) -> None:
        self.hf = tokenizer
        self.pad_token = pad_token
        self.unk_token = unk_token
        self._pad = tokenizer.token_to_id(pad_token) if pad_token else None
        self._unk = tokenizer.token_to_id(unk_token) if unk_token else None

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self) -> int:
        return 0 if self._pad is None else self._pad

    @property
    def unk_id(self) -> int | None:
        return self._unk

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=True)

    def save(self, directory: PathLike) -> Path:
        folder = super().save(directory)
        self.hf.save(str(folder / HF_FILE))
        return folder

    def _config(self) -> dict[str, Any]:
        return {"pad_token": self.pad_token, "unk_token": self.unk_token}

    @classmethod
    def _from_config(cls, folder: Path, config: dict[str, Any]) -> Tokenizer:
        hf = HFTokenizerObject.from_file(str(folder / HF_FILE))
        return cls(hf, config.get("pad_token"), config.get("unk_token"))


class BPETokenizer(_HFBacked):
    """Byte-level BPE (GPT-2 style) trained on the training split with Hugging Face ``tokenizers``.

    Ids: ``<pad>`` = 0, then the 256 byte symbols, then merges up to ``vocab_size``. Every string
    round-trips exactly (``decode(encode(s)) == s``) and there is no unknown token
    (``unk_id`` is ``None``).
    """

    kind = "bpe"

    @classmethod
    def train(
        cls, texts: str | Iterable[str], vocab_size: int = DEFAULT_BPE_VOCAB, min_frequency: int = 2
    ) -> BPETokenizer:
        """Learn merges on ``texts`` (one string is split into lines first) until ``vocab_size``."""
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        if vocab_size < len(alphabet) + 1:
            raise ValueError(f"byte-level BPE needs vocab_size >= {len(alphabet) + 1}, got {vocab_size}")
        hf = HFTokenizerObject(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD],
            initial_alphabet=alphabet, show_progress=False,
        )
        lines = texts.splitlines(keepends=True) if isinstance(texts, str) else texts
        hf.train_from_iterator(lines, trainer=trainer)
        return cls(hf, PAD, None)


class HubTokenizer(_HFBacked):
    """A pretrained tokenizer (any ``tokenizer.json`` from the Hugging Face Hub); see :func:`hub_tokenizer`.

    ``pad_id`` is the tokenizer's padding token when it declares one, else a conventional pad /
    end-of-text token, else 0 (harmless: padded positions are masked). Round trips are only as
    exact as the pretrained tokenizer (e.g. BERT's lower-cases).
    """

    kind = "hf"
    PAD_CANDIDATES = ("<pad>", "[PAD]", "<|pad|>", "<|endoftext|>", "</s>")
    UNK_CANDIDATES = ("<unk>", "[UNK]", "<|unk|>")

    def __init__(self, tokenizer: HFTokenizerObject, pad_token: str | None = None,
                 unk_token: str | None = None, source: str | None = None) -> None:
        if pad_token is None:
            declared = (tokenizer.padding or {}).get("pad_token")
            pad_token = declared or _first_known(tokenizer, self.PAD_CANDIDATES)
        if unk_token is None:
            unk_token = getattr(tokenizer.model, "unk_token", None) or _first_known(tokenizer, self.UNK_CANDIDATES)
        super().__init__(tokenizer, pad_token, unk_token)
        self.source = source

    @classmethod
    def from_file(cls, path: PathLike, source: str | None = None) -> HubTokenizer:
        """Wrap a Hugging Face ``tokenizer.json``."""
        return cls(HFTokenizerObject.from_file(str(path)), source=source)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "source": self.source}

    @classmethod
    def _from_config(cls, folder: Path, config: dict[str, Any]) -> Tokenizer:
        hf = HFTokenizerObject.from_file(str(folder / HF_FILE))
        return cls(hf, config.get("pad_token"), config.get("unk_token"), config.get("source"))


def hub_tokenizer(name: str, revision: str | None = None) -> HubTokenizer:
    """Load the pretrained tokenizer ``name`` (e.g. ``"gpt2"``) from the Hugging Face Hub.

    Offline (``LINMIX_OFFLINE`` / ``HF_HUB_OFFLINE``) only the local Hugging Face cache is tried.
    Raises ``OSError`` saying why (offline and not cached, hub unreachable, no ``tokenizer.json``).
    """
    from huggingface_hub import hf_hub_download  # optional dependency, only needed here

    offline = offline_reason()
    reason = f"offline ({offline})" if offline else None
    if reason is None and not url_reachable(hf_endpoint()):
        reason = f"the Hugging Face Hub ({hf_endpoint()}) is not reachable"
    try:
        path = hf_hub_download(name, HF_FILE, revision=revision, local_files_only=reason is not None,
                               etag_timeout=HUB_TIMEOUT_S)
    except Exception as exc:  # hub errors come in many classes; one clear message is what matters
        where = (f"{reason}, and it is not in the local Hugging Face cache" if reason
                 else f"download failed ({type(exc).__name__}: {exc})")
        raise OSError(
            f"could not load tokenizer {name!r} from the Hugging Face Hub: {where}. Connect to the "
            f"network (unset LINMIX_OFFLINE / HF_HUB_OFFLINE), or use a tokenizer saved with "
            f"Tokenizer.save() via load_tokenizer(dir). Only repositories with a {HF_FILE} are supported."
        ) from exc
    return HubTokenizer.from_file(path, source=name)


def _first_known(tokenizer: HFTokenizerObject, candidates: Sequence[str]) -> str | None:
    return next((t for t in candidates if tokenizer.token_to_id(t) is not None), None)


__all__ = ["BPETokenizer", "HubTokenizer", "hub_tokenizer"]
