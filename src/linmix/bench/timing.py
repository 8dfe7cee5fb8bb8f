"""Timers, the fresh-process peak-memory probe, and the machine/version record every result carries.

Timing: a callable is warmed up, then called ``repeats`` times; each call is bracketed by a device
synchronisation (CUDA) and timed with ``time.perf_counter``; the median is reported (the minimum beside it).
The ops benchmark interleaves the cases round-robin inside each length, so load from other processes on a
shared machine hits every case alike and the ratios stay honest.

Memory: each point runs in a *fresh process* (forked from a probe server that has already imported torch,
so a point costs a fork, not an interpreter start). The job builds its model, warms up on a tiny
input, then the probe records the baseline and runs the measured call once:

* CPU: peak resident set size. The kernel's high-water mark is reset (``/proc/self/clear_refs``, value 5)
  after the warm-up and read back as ``VmHWM``; ``peak extra = VmHWM - VmRSS(before)``. Where that file
  cannot be written, ``ru_maxrss`` is used instead (an upper bound when the warm-up peaked higher).
* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the allocated bytes
  before the call.
"""
from __future__ import annotations

import contextlib
import gc
import importlib
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

# ------------------------------------------------------------------------------------------- timing


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; ``ValueError`` for an unavailable CUDA."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch.cuda.is_available() is False")
    return dev


@contextlib.contextmanager
def num_threads(n: int | None):
    """Run with ``n`` intra-op threads (``None``: unchanged), restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes, device work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def time_repeats(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1,
                 budget_s: float | None = None, min_repeats: int = 3) -> list[float]:
    """Warm up, then time ``repeats`` calls (fewer, but at least ``min_repeats``, past ``budget_s``)."""
    for _ in range(max(0, warmup)):
        time_call(fn, device)
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        times.append(time_call(fn, device))
        if budget_s is not None and len(times) >= min_repeats and time.perf_counter() - start > budget_s:
            break
    return times


# ------------------------------------------------------------------------------- machine and versions


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if found:
            return found.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(start: str | Path | None = None) -> str | None:
    """The checked-out commit, read from ``.git`` files (no ``git`` process); ``None`` outside a repo.

    ``LINMIX_GIT_COMMIT`` overrides it (for builds without a ``.git`` folder).
    """
    if os.environ.get("LINMIX_GIT_COMMIT"):
        return os.environ["LINMIX_GIT_COMMIT"]
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        git = folder / ".git"
        if git.is_file():  # worktree: "gitdir: <path>"
            text = git.read_text().strip()
            if text.startswith("gitdir:"):
                git = (folder / text.split(":", 1)[1].strip()).resolve()
        if not git.is_dir():
            continue
        try:
            head = (git / "HEAD").read_text().strip()
        except OSError:
            return None
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for root in (git, common):
            if (root / ref).is_file():
                return (root / ref).read_text().strip()
            packed = root / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[1] == ref:
                        return parts[0]
        return None
    return None


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where unavailable)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info(device: torch.device | str = "cpu") -> dict:
    """Platform, CPU, core count, thread count, library versions and git commit, for every results file."""
    import numpy

    import linmix

    dev = torch.device(device)
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count()
    info = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": affinity,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "linmix": linmix.__version__,
        "mkl": bool(torch.backends.mkl.is_available()),
        "device": str(dev),
        "git_commit": git_commit(Path(__file__).parent),
    }
    info["load_average"] = load_average()  # other processes skew CPU timings (threads meet at barriers)
    if dev.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


# --------------------------------------------------------------------------- fresh-process memory probe


def _status_kib(key: str) -> int | None:
    try:
        found = re.search(rf"^{key}:\s+(\d+)\s*kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark for this process; False where that is unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def _maxrss_kib() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _load(target: str) -> Callable:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def measure_peak(run: Callable[[], object], device: torch.device) -> dict:
    """Peak extra memory of one ``run()`` in *this* process (call it in a fresh one: see module docstring)."""
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_extra_mib": (peak - base) / 2**20, "baseline_mib": base / 2**20,
                "method": "cuda.max_memory_allocated"}
    exact = _reset_peak_rss()
    base = _status_kib("VmRSS") if exact else None
    if base is None:
        exact = False
        base = _maxrss_kib()
    run()
    peak = _status_kib("VmHWM") if exact else _maxrss_kib()
    return {"peak_extra_mib": max(0, peak - base) / 1024, "baseline_mib": base / 1024,
            "method": "peak RSS (VmHWM reset)" if exact else "ru_maxrss"}


def run_probe_request(request: dict) -> dict:
    """Build the job of ``request`` and measure it here (the body of every fresh probe process)."""
    try:
        torch.set_num_threads(int(request.get("threads") or torch.get_num_threads()))
        dev = torch.device(request.get("device", "cpu"))
        run = _load(request["target"])(**request["kwargs"])
        return {"ok": True, **measure_peak(run, dev)}
    except BaseException as err:  # report every failure (MemoryError included) to the parent
        return {"ok": False, "error": f"{type(err).__name__}: {err}".splitlines()[0][:300]}


def _zygote_main(result_fd: int) -> None:
    """Probe server: import torch once, then ``fork`` a fresh child per request read from stdin.

    The server itself never runs a torch operator, so forking it is safe (no OpenMP pool, no CUDA context
    to inherit). Each child measures one point, writes its JSON result to a pipe and exits; the server
    relays it (or the child's exit status when it died, e.g. killed by the OOM killer) on ``result_fd``.
    """
    import json

    import linmix  # noqa: F401  (preload: children start with everything imported)
    import linmix.bench.ops  # noqa: F401
    import linmix.bench.decode  # noqa: F401
    import linmix.bench.train_speed  # noqa: F401
    import torch.fx.experimental.symbolic_shapes  # noqa: F401  (autograd imports it, with sympy, on first use)

    out = os.fdopen(result_fd, "w")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: measure, report, exit without running the parent's cleanup
            os.close(r)
            try:
                payload = json.dumps(run_probe_request(request)).encode()
            except BaseException as err:  # pragma: no cover - last resort
                payload = json.dumps({"ok": False, "error": repr(err)}).encode()
            os.write(w, payload)
            os._exit(0)
        os.close(w)
        chunks = []
        with os.fdopen(r, "rb") as f:
            chunks.append(f.read())
        _, status = os.waitpid(pid, 0)
        data = b"".join(chunks)
        if data:
            result = json.loads(data)
        elif os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            why = " (out of memory?)" if sig == 9 else ""
            result = {"ok": False, "error": f"memory probe killed by signal {sig}{why}"}
        else:
            result = {"ok": False, "error": f"memory probe exited with status {os.WEXITSTATUS(status)}"}
        out.write(json.dumps(result) + "\n")
        out.flush()


class _Zygote:
    """The parent's handle on the probe server (started on first use, stopped at exit)."""

    def __init__(self) -> None:
        import subprocess

        r, w = os.pipe()
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from linmix.bench.timing import _zygote_main; _zygote_main({w})"],
            stdin=subprocess.PIPE, pass_fds=(w,), env=env, start_new_session=True, text=True)
        os.close(w)
        self.results = os.fdopen(r, "r")

    def request(self, payload: dict, timeout_s: float) -> dict:
        import json
        import select

        self.proc.stdin.write(json.dumps(payload) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.results], [], [], timeout_s)
        if not ready:
            self.stop()
            return {"ok": False, "error": f"memory probe timed out after {timeout_s:.0f} s"}
        line = self.results.readline()
        if not line:
            self.stop()
            return {"ok": False, "error": "memory probe server died"}
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the server and the child it forked (own session)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.results.close()


_ZYGOTE: _Zygote | None = None


def _stop_zygote() -> None:
    global _ZYGOTE
    if _ZYGOTE is not None:
        try:
            _ZYGOTE.proc.stdin.close()
            _ZYGOTE.proc.wait(timeout=10)
        except Exception:
            _ZYGOTE.stop()
        _ZYGOTE = None


def probe_memory(target: str, kwargs: dict, device: torch.device | str = "cpu",
                 timeout_s: float = 900.0) -> dict:
    """Run ``target(**kwargs)`` (``"module:function"``; it builds, warms up and returns the call to
    measure) in a fresh process and return ``{"ok", "peak_extra_mib", "baseline_mib", "method"}`` or
    ``{"ok": False, "error"}`` (a crash, a kill by the OOM killer, a timeout).

    Where ``os.fork`` exists, the fresh process is forked from a probe server that has already imported
    torch (milliseconds per point); elsewhere each point starts a new interpreter.
    """
    global _ZYGOTE
    payload = {"target": target, "kwargs": kwargs, "device": str(device), "threads": torch.get_num_threads()}
    if hasattr(os, "fork"):
        if _ZYGOTE is None or not _ZYGOTE.alive():
            import atexit

            _ZYGOTE = _Zygote()
            atexit.register(_stop_zygote)
        return _ZYGOTE.request(payload, timeout_s)
    import json
    import subprocess

    code = ("import json, sys; from linmix.bench.timing import run_probe_request; "
            "print(json.dumps(run_probe_request(json.loads(sys.argv[1]))))")
    try:
        done = subprocess.run([sys.executable, "-c", code, json.dumps(payload)], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"memory probe timed out after {timeout_s:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"ok": False, "error": f"memory probe exited with status {done.returncode}"}
    return json.loads(lines[-1])
