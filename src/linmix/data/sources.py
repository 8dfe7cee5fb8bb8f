"""Where a named dataset's files live on disk, and how to get them there.

Every dataset is a folder in one *data root* (the layout of ``shared/data``, described in its
``SOURCES.md``): ``tinyshakespeare/``, ``wikitext2/``, ``imdb/``, ``ag_news/``, ``20newsgroups/``,
``reuters21578/r52/``, ``reuters21578/r8/``, ``womens_clothing_reviews/``. ``20newsgroups_raw`` is the
same 20 Newsgroups documents unstripped (headers, signatures and quotes kept), read from
``20newsgroups/train_raw.jsonl.gz`` and ``test_raw.jsonl.gz`` (no download: copy the files in).
:func:`resolve_dataset` finds that folder, trying in order

1. the explicit ``data_dir`` argument (a data root, or the dataset's own, same-named folder),
2. ``$LINMIX_DATA`` (a data root),
3. the user cache, ``$LINMIX_CACHE`` or ``~/.cache/linmix`` (a data root),
4. a download into the cache, in the same layout, when one is known for the dataset and the
   machine is online.

Downloads are opt-out: ``LINMIX_OFFLINE=1``, ``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1``
disable them (the test-suite sets these), and a short reachability probe runs first so that an
offline machine fails fast instead of hanging. When every place fails, the ``FileNotFoundError``
names the dataset, every place searched and how to provide the files.
"""
from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ENV_DATA = "LINMIX_DATA"
ENV_CACHE = "LINMIX_CACHE"
ENV_OFFLINE = "LINMIX_OFFLINE"
OFFLINE_VARS = (ENV_OFFLINE, "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")

TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
HF_ENDPOINT_DEFAULT = "https://huggingface.co"
PROBE_TIMEOUT_S = 5.0
DOWNLOAD_TIMEOUT_S = 30.0

Downloader = Callable[[Path], None]


@dataclass(frozen=True)
class DatasetSpec:
    """What linmix knows about one named dataset.

    ``subdir`` is the folder relative to a data root; ``markers`` are alternatives of which at
    least one must exist in that folder for it to count as present (e.g. ``train.jsonl`` or
    ``train.jsonl.gz``); ``required`` must all exist. ``download`` writes the folder's files into a
    given directory, or is ``None`` when no automatic download is available. ``split_suffix`` names
    split files ``<split><suffix>.jsonl[.gz]``, so two datasets can share one folder (and its
    ``labels.json``): ``20newsgroups_raw`` reads ``train_raw.jsonl.gz`` beside ``train.jsonl``.
    """

    name: str
    subdir: str
    task: str
    markers: tuple[str, ...]
    required: tuple[str, ...] = ()
    download: Downloader | None = None
    download_source: str = ""
    split_suffix: str = ""

    def is_present(self, folder: Path) -> bool:
        """Whether ``folder`` holds this dataset's files."""
        return (
            folder.is_dir()
            and any((folder / m).is_file() for m in self.markers)
            and all((folder / r).is_file() for r in self.required)
        )

    def expected_files(self) -> str:
        """A short human description of the files the folder must contain."""
        parts = [" or ".join(self.markers)] + list(self.required)
        return ", ".join(parts)


def is_offline() -> bool:
    """True when any of ``LINMIX_OFFLINE``, ``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE`` is truthy."""
    return any(_truthy(os.environ.get(v)) for v in OFFLINE_VARS)


def offline_reason() -> str | None:
    """The variable that makes linmix offline (e.g. ``"LINMIX_OFFLINE=1"``), or ``None``."""
    for var in OFFLINE_VARS:
        if _truthy(os.environ.get(var)):
            return f"{var}={os.environ[var]}"
    return None


def url_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """A quick HEAD request: lets a download fail in seconds on a machine without network."""
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def hf_endpoint() -> str:
    """The Hugging Face Hub endpoint (``$HF_ENDPOINT`` or the public hub)."""
    return os.environ.get("HF_ENDPOINT", HF_ENDPOINT_DEFAULT)


def cache_dir() -> Path:
    """The user cache data root: ``$LINMIX_CACHE`` or ``~/.cache/linmix``."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "linmix"


def known_datasets() -> list[str]:
    """Every accepted dataset name (aliases included), sorted."""
    return sorted(DATASETS)


def dataset_spec(name: str, variant: str | None = None) -> DatasetSpec:
    """The :class:`DatasetSpec` for ``name``; ``variant`` picks a sub-dataset (``reuters``: r52/r8).

    Raises ``ValueError`` listing the known names for an unknown name, or a variant that the
    dataset does not have.
    """
    key = name.strip().lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets are: {', '.join(known_datasets())}")
    if variant is None:
        return DATASETS[key]
    base = key.split("-")[0]
    variants = {k.split("-", 1)[1]: k for k in DATASETS if k.startswith(base + "-")}
    v = variant.strip().lower()
    if v not in variants:
        raise ValueError(
            f"dataset {name!r} has no variant {variant!r}"
            + (f"; its variants are: {', '.join(sorted(variants))}" if variants else "")
        )
    chosen = DATASETS[variants[v]]
    if key != base and DATASETS[key] is not chosen:
        raise ValueError(f"dataset name {name!r} conflicts with variant {variant!r}")
    return chosen


def resolve_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    variant: str | None = None,
    download: bool = True,
) -> Path:
    """The folder holding dataset ``name``'s files, searched in the order given in the module doc.

    ``data_dir`` may be a data root (holding ``<subdir>/``) or the dataset's folder itself (a folder
    named like the last part of ``<subdir>``, e.g. ``.../r8`` for ``reuters-r8``).
    ``download=False`` (or an offline environment variable) skips the download step.
    """
    spec = dataset_spec(name, variant)
    searched: list[str] = []

    if data_dir is not None:
        return _in_data_dir(spec, Path(data_dir).expanduser())
    searched.append("data_dir argument: not given")

    env = os.environ.get(ENV_DATA)
    if env:
        folder = Path(env).expanduser() / spec.subdir
        if spec.is_present(folder):
            return folder
        searched.append(f"${ENV_DATA}: {folder}")
    else:
        searched.append(f"${ENV_DATA}: not set")

    cached = cache_dir() / spec.subdir
    if spec.is_present(cached):
        return cached
    searched.append(f"user cache (${ENV_CACHE} or ~/.cache/linmix): {cached}")

    searched.append(_try_download(spec, cached, download))
    if spec.is_present(cached):
        return cached

    places = "\n".join(f"  - {s}" for s in searched)
    raise FileNotFoundError(
        f"dataset {spec.name!r} was not found. Searched, in order:\n{places}\n"
        f"To provide it, put a folder '{spec.subdir}/' holding {spec.expected_files()} "
        f"under a data root (layout: the README's Install section), then set {ENV_DATA}=/path/to/data_root "
        f"or pass --data-dir /path/to/data_root (data_dir= in Python)."
    )


def _in_data_dir(spec: DatasetSpec, root: Path) -> Path:
    """An explicit data directory is authoritative: the dataset is there, or it is an error (no fallback)."""
    if not root.is_dir():
        raise FileNotFoundError(f"--data-dir {root} does not exist or is not a directory; "
                                f"pass the folder that holds '{spec.subdir}/' (or drop --data-dir to use ${ENV_DATA})")
    candidates = [root / spec.subdir]
    if root.name == Path(spec.subdir).name:
        candidates.append(root)
    for folder in candidates:
        if spec.is_present(folder):
            return folder
    raise FileNotFoundError(
        f"dataset {spec.name!r} is not in --data-dir {root}: expected {' or '.join(str(c) for c in candidates)} "
        f"holding {spec.expected_files()}\nlayout: the README's Install section; drop --data-dir to search "
        f"${ENV_DATA} and the cache instead")


def _try_download(spec: DatasetSpec, target: Path, download: bool) -> str:
    """Attempt the download step; returns the line describing it for the not-found message."""
    if spec.download is None:
        return "download: none available for this dataset"
    if not download:
        return "download: disabled (download=False)"
    reason = offline_reason()
    if reason:
        return f"download: skipped, offline ({reason})"
    log.info("downloading dataset %r from %s into %s", spec.name, spec.download_source, target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            spec.download(tmp)
            if not spec.is_present(tmp):
                raise OSError("the download did not produce the expected files")
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    except Exception as exc:  # any failure (network, hub, disk) becomes one line of the report
        return f"download from {spec.download_source}: failed ({type(exc).__name__}: {exc})"
    return f"download from {spec.download_source}: done"


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false", "no", "off")


def _write_jsonl_gz_or_plain(path: Path, rows: list[dict[str, object]]) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:  # type: ignore[operator]
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _download_tinyshakespeare(dest: Path) -> None:
    """Karpathy's char-rnn ``input.txt`` plus nanoGPT's 90/10 ``train.txt`` / ``valid.txt``."""
    if not url_reachable(TINYSHAKESPEARE_URL):
        raise OSError(f"{TINYSHAKESPEARE_URL} is not reachable")
    with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=DOWNLOAD_TIMEOUT_S) as r:
        text = r.read().decode("utf-8")
    n = int(0.9 * len(text))
    for fname, part in (("input.txt", text), ("train.txt", text[:n]), ("valid.txt", text[n:])):
        (dest / fname).write_text(part, encoding="utf-8", newline="")


def _load_hf(repo: str, config: str | None, split: str):  # type: ignore[no-untyped-def]
    if not url_reachable(hf_endpoint()):
        raise OSError(f"the Hugging Face Hub ({hf_endpoint()}) is not reachable")
    import datasets  # optional dependency, imported only when a download is attempted

    return datasets.load_dataset(repo, config, split=split)


def _hf_classification(repo: str, label_names: list[str] | None, jsonl: str) -> Downloader:
    """A downloader writing ``train``/``test`` ``{"text", "label"}`` files plus ``labels.json``."""

    def download(dest: Path) -> None:
        names: dict[int, str] = {}
        for split in ("train", "test"):
            ds = _load_hf(repo, None, split)
            rows = [{"text": r["text"], "label": int(r["label"])} for r in ds]
            if label_names is None and "label_text" in ds.column_names:
                names.update({int(r["label"]): r["label_text"] for r in ds})
            _write_jsonl_gz_or_plain(dest / f"{split}.{jsonl}", rows)
        final = label_names if label_names is not None else [names[i] for i in sorted(names)]
        (dest / "labels.json").write_text(json.dumps(final, ensure_ascii=False), encoding="utf-8")

    return download


def _download_wikitext2(dest: Path) -> None:
    """WikiText-2 v1 (tokenized) from the hub: one line per row, as the official ``.tokens`` files."""
    for split, fname in (("train", "train.txt"), ("validation", "valid.txt"), ("test", "test.txt")):
        ds = _load_hf("Salesforce/wikitext", "wikitext-2-v1", split)
        lines = (t if t.endswith("\n") else t + "\n" for t in ds["text"])
        (dest / fname).write_text("".join(lines), encoding="utf-8", newline="")


_CLS_MARKERS = ("train.jsonl", "train.jsonl.gz")
_CLS_REQUIRED = ("labels.json",)
_R52 = DatasetSpec("reuters-r52", "reuters21578/r52", "classification", _CLS_MARKERS, _CLS_REQUIRED)
_R8 = DatasetSpec("reuters-r8", "reuters21578/r8", "classification", _CLS_MARKERS, _CLS_REQUIRED)
#: the unstripped 20 Newsgroups messages, beside the stripped ones; no download source (see SOURCES.md)
_NEWSGROUPS_RAW = DatasetSpec("20newsgroups_raw", "20newsgroups", "classification", ("train_raw.jsonl.gz",),
                              ("test_raw.jsonl.gz", "labels.json"), split_suffix="_raw")
_CLOTHING = DatasetSpec(
    "clothing_reviews", "womens_clothing_reviews", "regression", _CLS_MARKERS, ("schema.json",)
)

DATASETS: Mapping[str, DatasetSpec] = {
    "tinyshakespeare": DatasetSpec(
        "tinyshakespeare", "tinyshakespeare", "lm", ("input.txt", "train.txt"),
        download=_download_tinyshakespeare, download_source=TINYSHAKESPEARE_URL,
    ),
    "wikitext2": DatasetSpec(
        "wikitext2", "wikitext2", "lm", ("train.txt",),
        download=_download_wikitext2, download_source="hf:Salesforce/wikitext (wikitext-2-v1)",
    ),
    "imdb": DatasetSpec(
        "imdb", "imdb", "classification", _CLS_MARKERS, _CLS_REQUIRED,
        download=_hf_classification("stanfordnlp/imdb", ["neg", "pos"], "jsonl.gz"),
        download_source="hf:stanfordnlp/imdb",
    ),
    "ag_news": DatasetSpec(
        "ag_news", "ag_news", "classification", _CLS_MARKERS, _CLS_REQUIRED,
        download=_hf_classification("fancyzhx/ag_news", ["World", "Sports", "Business", "Sci/Tech"], "jsonl"),
        download_source="hf:fancyzhx/ag_news",
    ),
    "20newsgroups": DatasetSpec(
        "20newsgroups", "20newsgroups", "classification", _CLS_MARKERS, _CLS_REQUIRED,
        download=_hf_classification("SetFit/20_newsgroups", None, "jsonl"),
        download_source="hf:SetFit/20_newsgroups",
    ),
    "20newsgroups_raw": _NEWSGROUPS_RAW,
    "reuters": _R52,
    "reuters-r52": _R52,
    "reuters-r8": _R8,
    "clothing_reviews": _CLOTHING,
    "womens_clothing_reviews": _CLOTHING,
}
