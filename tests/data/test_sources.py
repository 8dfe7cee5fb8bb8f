"""Dataset resolution: the search order, the not-found message, names and variants, downloads."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from linmix.data import sources
from linmix.data.sources import cache_dir, dataset_spec, is_offline, known_datasets, resolve_dataset


OFFLINE_VARS = ("LINMIX_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def _copy_dataset(fake_root: Path, subdir: str, dest_root: Path) -> Path:
    shutil.copytree(fake_root / subdir, dest_root / subdir)
    return dest_root / subdir


def _online_without_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the conftest's offline switches and drop $LINMIX_DATA: only the cache and downloads remain."""
    monkeypatch.delenv("LINMIX_DATA", raising=False)
    for var in OFFLINE_VARS:
        monkeypatch.delenv(var)


def test_tests_run_offline_with_private_cache(offline_private_cache: Path) -> None:
    assert is_offline()
    assert cache_dir() == offline_private_cache


def test_cache_dir_defaults_to_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LINMIX_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "linmix"


def test_data_dir_beats_env_beats_cache(fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        offline_private_cache: Path) -> None:
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    for root in (explicit, env, offline_private_cache):
        _copy_dataset(fake_root, "imdb", root)
    monkeypatch.setenv("LINMIX_DATA", str(env))
    assert resolve_dataset("imdb", explicit) == explicit / "imdb"
    assert resolve_dataset("imdb") == env / "imdb"
    monkeypatch.delenv("LINMIX_DATA")
    assert resolve_dataset("imdb") == offline_private_cache / "imdb"


def test_an_explicit_data_dir_never_falls_back(fake_root: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / "env"
    _copy_dataset(fake_root, "ag_news", env)
    monkeypatch.setenv("LINMIX_DATA", str(env))
    assert resolve_dataset("ag_news") == env / "ag_news"
    with pytest.raises(FileNotFoundError, match="does not exist or is not a directory"):
        resolve_dataset("ag_news", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"dataset 'ag_news' is not in --data-dir .*empty"):
        resolve_dataset("ag_news", tmp_path / "empty")


def test_data_dir_may_be_the_dataset_folder_itself(fake_root: Path) -> None:
    folder = fake_root / "reuters21578" / "r8"
    assert resolve_dataset("reuters-r8", folder) == folder


def test_another_datasets_folder_is_not_taken(fake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINMIX_DATA", raising=False)
    with pytest.raises(FileNotFoundError):
        resolve_dataset("tinyshakespeare", fake_root / "wikitext2")


def test_not_found_message_names_dataset_places_and_remedy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           offline_private_cache: Path) -> None:
    env = tmp_path / "env"
    env.mkdir()
    monkeypatch.setenv("LINMIX_DATA", str(env))
    with pytest.raises(FileNotFoundError) as info:
        resolve_dataset("tinyshakespeare")
    msg = str(info.value)
    for needle in ("'tinyshakespeare'", str(env / "tinyshakespeare"), str(offline_private_cache / "tinyshakespeare"),
                   "offline (LINMIX_OFFLINE=1)", "LINMIX_DATA", "--data-dir"):
        assert needle in msg, needle


def test_not_found_without_env_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINMIX_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"(?s)not given.*\$LINMIX_DATA: not set.*none available"):
        resolve_dataset("clothing_reviews")


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="known datasets are: .*tinyshakespeare"):
        resolve_dataset("shakespeare-full")
    assert {"tinyshakespeare", "wikitext2", "imdb", "ag_news", "20newsgroups", "reuters",
            "reuters-r8", "clothing_reviews"} <= set(known_datasets())


def test_reuters_variants() -> None:
    assert dataset_spec("reuters").subdir == "reuters21578/r52"
    assert dataset_spec("reuters", variant="r8").subdir == "reuters21578/r8"
    assert dataset_spec("reuters-r8").subdir == "reuters21578/r8"
    assert dataset_spec("reuters-r8", variant="r8").subdir == "reuters21578/r8"
    with pytest.raises(ValueError, match="conflicts"):
        dataset_spec("reuters-r8", variant="r52")
    with pytest.raises(ValueError, match="no variant"):
        dataset_spec("imdb", variant="r8")


def test_download_lands_in_cache_in_shared_layout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  offline_private_cache: Path) -> None:
    text = "".join(f"line {i}\n" for i in range(100))
    source = tmp_path / "input.txt"
    source.write_text(text, encoding="utf-8")
    monkeypatch.setattr(sources, "TINYSHAKESPEARE_URL", source.as_uri())
    _online_without_data_env(monkeypatch)
    folder = resolve_dataset("tinyshakespeare")
    assert folder == offline_private_cache / "tinyshakespeare"
    n = int(0.9 * len(text))
    assert (folder / "input.txt").read_text() == text
    assert (folder / "train.txt").read_text() == text[:n]
    assert (folder / "valid.txt").read_text() == text[n:]
    assert [p.name for p in offline_private_cache.iterdir()] == ["tinyshakespeare"]


def test_failed_download_is_reported_and_leaves_no_debris(monkeypatch: pytest.MonkeyPatch,
                                                          offline_private_cache: Path) -> None:
    def broken(dest: Path) -> None:
        (dest / "partial").write_text("x")
        raise OSError("connection refused")

    spec = dataclasses.replace(dataset_spec("imdb"), download=broken, download_source="test://imdb")
    monkeypatch.setitem(sources.DATASETS, "imdb", spec)
    _online_without_data_env(monkeypatch)
    with pytest.raises(FileNotFoundError, match="download from test://imdb: failed .*connection refused"):
        resolve_dataset("imdb")
    assert list(offline_private_cache.iterdir()) == []


@pytest.mark.parametrize("var", ["LINMIX_OFFLINE", "HF_HUB_OFFLINE"])
def test_each_offline_variable_blocks_downloads(var: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(dest: Path) -> None:
        raise AssertionError("download attempted while offline")

    spec = dataclasses.replace(dataset_spec("ag_news"), download=must_not_run)
    monkeypatch.setitem(sources.DATASETS, "ag_news", spec)
    _online_without_data_env(monkeypatch)
    monkeypatch.setenv(var, "1")
    with pytest.raises(FileNotFoundError, match=f"offline \\({var}=1\\)"):
        resolve_dataset("ag_news")


def test_download_false_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINMIX_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="download=False"):
        resolve_dataset("wikitext2", download=False)
