"""The overview of a folder of comparison tables (``results/compare/SUMMARY.md``), from the job folders'
``results.csv`` (and, for LR grids, ``grid_runs.json``) files alone, so it can be rebuilt without rerunning
anything: ``linmix experiment summary results/compare``.

The sections name the jobs of ``results/compare/`` (each one ``<job>/config.toml`` run by ``linmix experiment
run``); a job whose folder is missing leaves its rows, or its whole section, out. Numbers are not rounded in
anyone's favour: accuracies to 3 decimals, losses to 3, speeds to 2 significant digits.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable

#: summation vs attention test accuracy that the summation papers report, per dataset
PAPER_CLAIMS = {"imdb": (0.88, 0.87), "20newsgroups": (0.65, 0.58), "ag_news": (0.91, 0.91), "reuters": (0.81, 0.77)}


def _load(folder: Path, job: str) -> list[dict[str, str]] | None:
    """A job's per-candidate rows, or ``None`` when the job has not been run (its section skips it)."""
    path = folder / job / "results.csv"
    if not path.exists():
        return None
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(row: dict[str, str], key: str) -> float:
    """A CSV cell as a number; empty or missing cells are NaN."""
    return float(row[key]) if row.get(key) not in (None, "", "nan") else float("nan")


def classification(folder: Path) -> list[str]:
    """Section 1: every classify-DATASET-T job, one row per dataset and length, cells accuracy / speed-up."""
    lines = ["## 1. Classification (single-layer 'bare' models, word vocabulary 10k, lr 1e-3, batch 32)", "",
             "Best validation accuracy over epochs (2 for IMDB and AG News, 4 for 20 Newsgroups, 8 for Reuters "
             "R52: about 1,250-1,650 optimizer steps each), evaluated on the whole official test split after "
             "every epoch, as the papers report it. Cells: accuracy / speed-up of training tokens/s over "
             "attention@bare. Papers: summation vs attention accuracy from the papers.", ""]
    header = None
    for ds in ("imdb", "ag_news", "20newsgroups", "reuters"):
        for length in (256, 512):
            rows = _load(folder, f"classify-{ds}-{length}")
            if rows is None:
                continue
            if header is None:
                header = [r["candidate"] for r in rows]
                lines += ["| dataset | T | " + " | ".join(header) + " | attention s/epoch | papers (sum vs attn) |",
                          "|---|---|" + "---|" * (len(header) + 2)]
            by = {r["candidate"]: r for r in rows}
            cells = [f"{_num(by[c], 'val_acc'):.3f} / {_num(by[c], 'speedup'):.2g}x" if c in by else "n/a"
                     for c in header]
            claim = PAPER_CLAIMS[ds]
            lines.append(f"| {ds} | {length} | " + " | ".join(cells) +
                         f" | {_num(by['attention@bare'], 's_per_epoch'):.0f} | {claim[0]:.2f} vs {claim[1]:.2f} |")
    return lines + [""]


def language_models(folder: Path) -> list[str]:
    """Section 2: the lm-DATASET jobs side by side, one row per model."""
    lines = ["## 2. Language modelling (4-layer models, 400 steps, batch 32 x 128 tokens, parameters within 10%)",
             "", "Cells: validation perplexity / next-token accuracy / speed-up of training tokens/s over "
                 "attention*4.", ""]
    jobs = [(name, _load(folder, f"lm-{name}")) for name in ("tinyshakespeare", "wikitext2", "imdb", "ag_news")]
    jobs = [(n, r) for n, r in jobs if r is not None]
    if not jobs:
        return []
    cands = [r["candidate"] for r in jobs[0][1]]
    lines += ["| model | " + " | ".join(f"{n} ({'char' if n == 'tinyshakespeare' else 'BPE'})" for n, _ in jobs)
              + " |", "|---|" + "---|" * len(jobs)]
    for c in cands:
        cells = []
        for _, rows in jobs:
            r = {x["candidate"]: x for x in rows}.get(c)
            cells.append(f"{_num(r, 'val_ppl'):.2f} / {_num(r, 'val_acc'):.3f} / {_num(r, 'speedup'):.2g}x"
                         if r else "n/a")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines + [""]


def _table_section(folder: Path, title: str, note: str, columns: list[str], jobs: list[tuple[Any, str]],
                   row: Callable[[Any, dict[str, str]], str]) -> list[str]:
    """A titled section holding one table over several jobs: ``row(key, csv_row)`` formats each candidate of
    the job folder paired with ``key``; the section is left out when none of the jobs has been run."""
    body = [row(key, r) for key, job in jobs for r in (_load(folder, job) or [])]
    if not body:
        return []
    return [title, "", note, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns), *body, ""]


def nanogpt(folder: Path) -> list[str]:
    """Section 3: the nanogpt-BLOCK jobs, anchored to nanoGPT's published baby-GPT loss."""
    return _table_section(
        folder, "## 3. nanoGPT anchor (char Shakespeare, d 128, 4 heads, batch 12, lr 1e-3 cosine, beta2 0.99)",
        "nanoGPT's README reports val loss about 1.88 for its CPU baby GPT at block 64 after 2000 iterations. "
        "Wall seconds include evaluation.",
        ["block", "steps", "model", "params", "val loss", "train tokens/s", "speed-up", "wall s"],
        [(block, f"nanogpt-{block}") for block in (64, 256, 1024)],
        lambda block, r: f"| {block} | {r['steps']} | {r['candidate']} | {int(r['params']):,} | "
                         f"{_num(r, 'val_loss'):.3f} | {_num(r, 'tokens_per_s'):,.0f} | {_num(r, 'speedup'):.2f}x | "
                         f"{_num(r, 'wall_s'):.0f} |")


def long_context(folder: Path) -> list[str]:
    """Section 4: the long-T jobs under one training-time budget ('train s' = steps x 8,192 / tokens/s)."""
    def row(t: int, r: dict[str, str]) -> str:
        train_s = int(r["steps"]) * 8192 / _num(r, "tokens_per_s")
        return (f"| {t} | {r['candidate']} | {r['steps']} | {train_s:.0f} | {_num(r, 'val_ppl'):.1f} | "
                f"{_num(r, 'val_acc'):.3f} | {_num(r, 'tokens_per_s'):,.0f} | {_num(r, 'speedup'):.2f}x |")

    return _table_section(
        folder, "## 4. Long context (WikiText-2 BPE, 8,192 tokens per step, 240 s of training each)",
        "Every model gets the same training time: a 12-step timing probe (run while another job used the "
        "other core) sets its step count. 'train s' = steps x 8,192 tokens / median training tokens/s, "
        "the training time actually spent; where it falls short of 240 s the probe overestimated the "
        "step time. Validation on the whole WikiText-2 validation split.",
        ["T", "model", "steps", "train s", "val ppl", "val acc", "train tokens/s", "speed-up"],
        [(t, f"long-{t}") for t in (2048, 8192)], row)


def hybrids(folder: Path) -> list[str]:
    """Section 8: the spectral paper's hybrids beside attention and spectral, in nanoGPT's CPU configuration."""
    jobs = [((f"tinyshakespeare char, block {b}"), f"hybrids-{b}") for b in (64, 256, 1024)]
    jobs.append(("wikitext2 BPE, block 256", "hybrids-wikitext2-256"))
    return _table_section(
        folder, "## 8. The spectral paper's hybrids (nanoGPT's CPU configuration: d 128 for attention, 4 heads, "
                "batch 12, lr 1e-3 cosine, beta2 0.99)",
        "Spectral with one global attention layer or with local attention, summation with local attention, "
        "beside attention and spectral; parameters within 10% of attention's, every job one run of all its "
        "candidates side by side (one thread, beside one other job on the 2-core CPU).",
        ["data", "steps", "model", "params", "val loss", "train tokens/s", "speed-up", "wall s"], jobs,
        lambda data, r: f"| {data} | {r['steps']} | {r['candidate']} | {int(r['params']):,} | "
                        f"{_num(r, 'val_loss'):.3f} | {_num(r, 'tokens_per_s'):,.0f} | {_num(r, 'speedup'):.2f}x | "
                        f"{_num(r, 'wall_s'):.0f} |")


def seed_repeats(folder: Path) -> list[str]:
    """Section 5: the repeat jobs (folders named seeds-*), mean ± std over 3 random seeds."""
    def row(key: tuple[str, str], r: dict[str, str]) -> str:
        job, metric = key
        digits = 4 if metric == "val_acc" else 3
        return (f"| {job} | {r['candidate']} | {metric} | {_num(r, metric):.{digits}f} ± "
                f"{_num(r, metric + '_std'):.{digits}f} | {_num(r, 'tokens_per_s'):,.0f} | "
                f"{_num(r, 'speedup'):.2f}x |")

    return _table_section(
        folder, "## 5. Seed repeats (3 seeds, mean ± std) where single-seed differences were small",
        "Same configurations as the single-seed tables above; only the random seed changes (model init and batch "
        "order).", ["job", "model", "metric", "mean ± std", "train tokens/s", "speed-up"],
        [((job, metric), job) for job, metric in (("seeds-ag_news", "val_acc"), ("seeds-tinyshakespeare", "val_ppl"))],
        row)


def lr_tables(folder: Path, title: str, note: str, jobs: tuple[str, ...]) -> list[str]:
    """One row per (job, candidate): best validation accuracy at each learning rate, the best in bold."""
    lines = [title, "", note, ""]
    found = False
    for job in jobs:
        path = folder / job / "grid_runs.json"  # every run of an LR grid; runs.json holds only the best of each
        if not path.exists():
            path = folder / job / "runs.json"
        if not path.exists():
            continue
        records = [r for r in json.loads(path.read_text()) if r.get("status") == "completed"]
        lrs = sorted({r["lr"] for r in records})
        lines += ([""] if found else []) + ["| job | model | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
                                            "|---|---|" + "---|" * len(lrs)]
        found = True
        for cand in dict.fromkeys(r["candidate"] for r in records):
            acc = {r["lr"]: r["val_acc"] for r in records if r["candidate"] == cand}
            best = max(acc.values())
            cells = [("**{:.3f}**" if acc.get(lr) == best else "{:.3f}").format(acc[lr]) if lr in acc else "n/a"
                     for lr in lrs]
            lines.append(f"| {job} | {cand} | " + " | ".join(cells) + " |")
    return lines + [""] if found else []


def lr_grid(folder: Path) -> list[str]:
    """Section 6: the lrgrid-* job, every candidate at every LR."""
    return lr_tables(folder, "## 6. The same LR grid for every classifier (3e-4, 1e-3, 3e-3)",
                     "Where summation fell furthest short of the papers' claims, every candidate is retrained at each "
                     "learning rate of one grid (same epochs as section 1); cells give best validation accuracy at "
                     "each LR, the best of each candidate in bold.",
                     ("lrgrid-20newsgroups-256",))


def longer_training(folder: Path) -> list[str]:
    """Section 7: the longer-* job (16 epochs at the grid's best LR)."""
    return lr_tables(folder, "## 7. Longer training: 20 Newsgroups, 16 epochs (4x section 1)",
                     "Attention and summation only, at lr 3e-3 (the best of the grid in section 6 for both); best "
                     "validation accuracy over the 16 epochs.", ("longer-20newsgroups-256",))


#: the overview's title and how it was made (the lines above the first section)
PREAMBLE = ["# Comparison tables: overview", "",
            "Generated by `linmix experiment summary results/compare` from the per-job folders beside it; each "
            "folder holds the full table (`results.md`), the exact command (`command.txt`), per-run records and "
            "validation curves. Each job is defined by its folder's `config.toml` and re-created by `linmix "
            "experiment run results/compare/JOB/config.toml` (`--samples` for the nanoGPT jobs' `samples.md`).",
            ""]
SECTIONS = (classification, language_models, nanogpt, long_context, seed_repeats, lr_grid, longer_training,
            hybrids)


def build_summary(folder: str | Path) -> str:
    """The overview's markdown for the job folders under ``folder``."""
    folder = Path(folder)
    parts = list(PREAMBLE)
    for section in SECTIONS:
        parts += section(folder)
    return "\n".join(parts).rstrip() + "\n"


def write_summary(folder: str | Path) -> Path:
    """Write ``folder/SUMMARY.md`` (see :func:`build_summary`) and return its path."""
    if not Path(folder).is_dir():
        raise NotADirectoryError(f"{folder} is not a folder of comparison tables")
    path = Path(folder) / "SUMMARY.md"
    path.write_text(build_summary(folder))
    return path
