"""The writers every benchmark shares: CSV, JSON, markdown tables, the results README, and the file set.

A benchmark result is ``{"meta": {benchmark, command, config, machine}, "rows": [records], "summary":
{..., "targets": [...]}}``. :func:`write_outputs` turns one into ``<name>.csv`` (records plus the run's
identity), ``<name>.json`` (the whole result), ``<name>.md`` (the bench's tables), its plots and a
``README.md`` with the command, machine and config, so a results folder explains itself.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

# -------------------------------------------------------------------------------------- markdown


def md_table(header: list[str], body: list[list]) -> str:
    """A GitHub markdown table (``None`` cells empty)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _cell(record: dict | None, key: str, fmt: Callable) -> str:
    """A formatted value; a record without it shows its status (``skipped``...) when that is not ``ok``."""
    if record is None:
        return ""
    if record.get(key) is None:
        status = record.get("status", "ok")
        return "-" if status == "ok" else status
    return fmt(record[key])


def pivot(rows: list[dict], row_key: str, col_key: str, key: str, fmt: Callable,
          label: Callable[[dict], str] | None = None, prefix: str | None = None) -> str:
    """One table row per ``row_key`` value, one column per ``col_key`` value (headed ``T=256``: ``prefix``
    defaults to ``<col_key>=``), cells ``key`` formatted by ``fmt``; ``label`` names a row from its first record."""
    subjects = list(dict.fromkeys(r[row_key] for r in rows))
    cols = sorted({r[col_key] for r in rows})
    by = {(r[row_key], r[col_key]): r for r in rows}
    body = []
    for s in subjects:
        first = next(r for r in rows if r[row_key] == s)
        body.append([label(first) if label else s] + [_cell(by.get((s, c)), key, fmt) for c in cols])
    head = f"{col_key}=" if prefix is None else prefix
    return md_table([row_key] + [f"{head}{c}" for c in cols], body)


def targets_markdown(targets: list[dict]) -> str:
    """The targets table: what was expected, what was measured, met / missed / n/a."""
    return md_table(["target", "measured", "status", "detail"],
                    [[t["target"], t["measured"], t["status"], t.get("detail", "")] for t in targets])


def machine_markdown(machine: dict) -> str:
    """The machine description as a markdown list (the keys a reader needs first)."""
    keys = ("cpu", "cpu_count", "cpus_available", "torch_threads", "device", "gpu", "platform", "python", "torch",
            "numpy", "linmix", "git_commit", "timestamp", "load_average_before", "load_average")
    return "\n".join(f"- {k}: `{machine[k]}`" for k in keys if k in machine)


def sections(*parts: tuple[str, str]) -> str:
    """``(heading, body)`` pairs as ``### heading`` sections (an empty heading: the body alone)."""
    return "\n\n".join(f"### {h}\n\n{b}" if h else b for h, b in parts) + "\n"


# ------------------------------------------------------------------------------------------- files


def write_csv(rows: list[dict], path: Path) -> Path:
    """Every record as a CSV line; the columns are the union of the records' keys, in first-seen order."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    return path


def write_json(result: dict, path: Path) -> Path:
    """The whole result (meta, records, summary), indented; numpy or path values as strings."""
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def write_markdown(text: str, path: Path, title: str) -> Path:
    """``# title`` and the bench's tables."""
    path.write_text(f"# {title}\n\n{text}")
    return path


def rows_with_machine(result: dict) -> list[dict]:
    """Rows plus the run's identity (commit, versions, CPU, threads), so a CSV stands on its own."""
    m = result["meta"]["machine"]
    extra = {"git_commit": m.get("git_commit"), "torch": m.get("torch"), "cpu": m.get("cpu"),
             "threads": m.get("torch_threads"), "timestamp": m.get("timestamp")}
    return [r | extra for r in result["rows"]]


def write_readme(out: Path, title: str, result: dict, body: str, files: list[str]) -> Path:
    """``README.md``: the command as run, the machine, the config, the files and the results tables."""
    meta = result["meta"]
    machine = ("## Machine (of this --report-only tabulation; the runs it reads were measured when they ran)"
               if (meta.get("config") or {}).get("report_only") else "## Machine")
    text = [f"# {title}", "", "Made by:", "", "```", meta.get("command") or "(library call)", "```", "",
            machine, "", machine_markdown(meta["machine"]), "", "## Config", "", "```json",
            json.dumps(meta["config"], indent=2, default=str), "```", "", "## Files", "",
            "\n".join(f"- `{f}`" for f in files), "", "## Results", "", body]
    path = out / "README.md"
    path.write_text("\n".join(text))
    return path


def write_outputs(result: dict, out: str | Path, title: str, markdown: str,
                  plot: Callable[[Path], list[Path]]) -> list[Path]:
    """Write ``<bench>.csv``, ``.json``, ``.md``, the plots ``plot(out)`` makes and ``README.md``."""
    name = result["meta"]["benchmark"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [write_csv(rows_with_machine(result), out / f"{name}.csv"), write_json(result, out / f"{name}.json"),
             write_markdown(markdown, out / f"{name}.md", f"linmix bench {name}")]
    files += plot(out)
    return files + [write_readme(out, title, result, markdown, [f.name for f in files])]
