"""The data layer: find datasets on disk, load them, tokenize them, batch them.

* :mod:`linmix.data.sources` — dataset names -> folders (``data_dir`` / ``$LINMIX_DATA`` / cache / download).
* :mod:`linmix.data.datasets` — loaders returning a text corpus, :class:`TextClassificationData`
  or :class:`MultimodalData`.
* :mod:`linmix.data.tokenizers` — char / word / byte-level BPE / hub tokenizers behind one interface.
* :mod:`linmix.data.batches` — :class:`LMWindows`, :class:`ClassificationBatches`, :class:`MultimodalBatches`.
"""
from linmix.data.batches import (
    ClassificationBatch,
    ClassificationBatches,
    LMWindows,
    MultimodalBatch,
    MultimodalBatches,
    encode_corpus,
    resolve_rank,
    shard_indices,
)
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
from linmix.data.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    HubTokenizer,
    Tokenizer,
    WordTokenizer,
    build_tokenizer,
    hub_tokenizer,
    load_tokenizer,
)

__all__ = [
    "BPETokenizer", "CharTokenizer", "ClassificationBatch", "ClassificationBatches", "DATASETS",
    "DatasetSpec", "HubTokenizer", "LMWindows", "MultimodalBatch", "MultimodalBatches", "MultimodalData",
    "TextClassificationData", "Tokenizer", "WordTokenizer", "build_tokenizer", "cache_dir", "dataset_spec",
    "encode_corpus", "hub_tokenizer", "is_offline", "known_datasets", "load_classification",
    "load_lm_text", "load_regression", "load_tokenizer", "normalize_split", "resolve_dataset",
    "resolve_rank", "shard_indices",
]
