"""The machine, library versions and git commit every benchmark result carries (a leaf module).

Timings mean little without the CPU, thread count, torch build and commit that produced them, so each
results file records :func:`machine_info`. The commit is read from ``.git`` files directly (no ``git``
process), so it works in containers without git installed.
"""
from __future__ import annotations

import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if found:
            return found.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_dir(folder: Path) -> Path | None:
    """The git folder of ``folder`` (following a worktree's ``gitdir:`` file), or None."""
    git = folder / ".git"
    if git.is_file():
        text = git.read_text().strip()
        if text.startswith("gitdir:"):
            git = (folder / text.split(":", 1)[1].strip()).resolve()
    return git if git.is_dir() else None


def _resolve_ref(git: Path, ref: str) -> str | None:
    """The commit a ref names, from loose ref files or ``packed-refs`` (the worktree's common dir too)."""
    roots = [git]
    if (git / "commondir").is_file():
        roots.append((git / (git / "commondir").read_text().strip()).resolve())
    for root in roots:
        if (root / ref).is_file():
            return (root / ref).read_text().strip()
        packed = root / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    return None


def git_commit(start: str | Path | None = None) -> str | None:
    """The checked-out commit of the repository holding ``start``; ``None`` outside a repo.

    ``LINMIX_GIT_COMMIT`` overrides it (for builds without a ``.git`` folder).
    """
    if os.environ.get("LINMIX_GIT_COMMIT"):
        return os.environ["LINMIX_GIT_COMMIT"]
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        git = _git_dir(folder)
        if git is None:
            continue
        try:
            head = (git / "HEAD").read_text().strip()
        except OSError:
            return None
        return _resolve_ref(git, head.split(":", 1)[1].strip()) if head.startswith("ref:") else head
    return None


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where unavailable): other processes skew CPU timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpus_available() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count()


def machine_info(device: torch.device | str = "cpu") -> dict:
    """Platform, CPU, core count, thread count, library versions and git commit, for every results file."""
    import numpy

    import linmix

    dev = torch.device(device)
    info = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": _cpus_available(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "linmix": linmix.__version__,
        "mkl": bool(torch.backends.mkl.is_available()),
        "device": str(dev),
        "git_commit": git_commit(Path(__file__).parent),
        "load_average": load_average(),
    }
    if dev.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info
