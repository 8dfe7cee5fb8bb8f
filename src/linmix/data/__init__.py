"""The data layer: find datasets on disk, load them, tokenize them, batch them.

* :mod:`linmix.data.sources` — dataset names -> folders (``data_dir`` / ``$LINMIX_DATA`` / cache / download).
* :mod:`linmix.data.datasets` — loaders returning a text corpus, :class:`TextClassificationData`
  or :class:`MultimodalData`.
* :mod:`linmix.data.tokenizers` — the tokenizer interface, char / word tokenizers, :func:`build_tokenizer`,
  :func:`load_tokenizer`; :mod:`linmix.data.bpe` — byte-level BPE and hub tokenizers (Hugging Face backed).
* :mod:`linmix.data.sharding` — which examples each rank sees (:func:`shard_indices`, :func:`resolve_rank`).
* :mod:`linmix.data.windows` — :class:`LMWindows` and :func:`encode_corpus` (language-model examples).
* :mod:`linmix.data.batches` — padded :class:`ClassificationBatches` / :class:`MultimodalBatches`.
"""
from linmix.data.batches import ClassificationBatch, ClassificationBatches, MultimodalBatch, MultimodalBatches
from linmix.data.bpe import BPETokenizer, HubTokenizer, hub_tokenizer
from linmix.data.datasets import (
    MultimodalData,
    TextClassificationData,
    load_classification,
    load_lm_text,
    load_regression,
    normalize_split,
)
from linmix.data.sources import (
    DATASETS,
    DatasetSpec,
    cache_dir,
    dataset_spec,
    is_offline,
    known_datasets,
    resolve_dataset,
)
from linmix.data.sharding import resolve_rank, shard_indices
from linmix.data.tokenizers import CharTokenizer, Tokenizer, WordTokenizer, build_tokenizer, load_tokenizer
from linmix.data.windows import LMWindows, encode_corpus

__all__ = [
    "BPETokenizer", "CharTokenizer", "ClassificationBatch", "ClassificationBatches", "DATASETS",
    "DatasetSpec", "HubTokenizer", "LMWindows", "MultimodalBatch", "MultimodalBatches", "MultimodalData",
    "TextClassificationData", "Tokenizer", "WordTokenizer", "build_tokenizer", "cache_dir", "dataset_spec",
    "encode_corpus", "hub_tokenizer", "is_offline", "known_datasets", "load_classification",
    "load_lm_text", "load_regression", "load_tokenizer", "normalize_split", "resolve_dataset",
    "resolve_rank", "shard_indices",
]
