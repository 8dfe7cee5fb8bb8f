"""Peak memory of one call, measured in a fresh process (a leaf module: it imports no benchmark).

Each point runs in a *fresh process* (forked from a probe server that has already imported torch, so a point
costs a fork, not an interpreter start): earlier points' allocator caches and high-water marks cannot leak
into it. The job (``"module:function"``, called with keyword arguments) builds its model, warms up on a tiny
input and returns the call to measure; the probe records the baseline and runs that call once:

* CPU: peak resident set size. The kernel's high-water mark is reset (``/proc/self/clear_refs``, value 5)
  after the warm-up and read back as ``VmHWM``; ``peak extra = VmHWM - VmRSS(before)``. Where that file
  cannot be written, ``ru_maxrss`` is used instead (an upper bound when the warm-up peaked higher).
* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the bytes before.

The server imports a job's module the first time it sees it (an import runs no torch operator, so forking
stays safe), and every later child inherits it.
"""
from __future__ import annotations

import gc
import importlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from linmix.bench.timing import synchronize

# --------------------------------------------------------------------------------- one measurement


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


def _measure_cuda(run: Callable[[], object], device: torch.device) -> dict:
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    run()
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {"peak_extra_mib": (peak - base) / 2**20, "baseline_mib": base / 2**20,
            "method": "cuda.max_memory_allocated"}


def measure_peak(run: Callable[[], object], device: torch.device) -> dict:
    """Peak extra memory of one ``run()`` in *this* process (call it in a fresh one: see module docstring)."""
    gc.collect()
    if device.type == "cuda":
        return _measure_cuda(run, device)
    exact = _reset_peak_rss()
    base = _status_kib("VmRSS") if exact else None
    if base is None:
        exact, base = False, _maxrss_kib()
    run()
    peak = _status_kib("VmHWM") if exact else _maxrss_kib()
    return {"peak_extra_mib": max(0, peak - base) / 1024, "baseline_mib": base / 1024,
            "method": "peak RSS (VmHWM reset)" if exact else "ru_maxrss"}


def _load(target: str) -> Callable:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def run_probe_request(request: dict) -> dict:
    """Build the job of ``request`` and measure it here (the body of every fresh probe process)."""
    try:
        torch.set_num_threads(int(request.get("threads") or torch.get_num_threads()))
        run = _load(request["target"])(**request["kwargs"])
        return {"ok": True, **measure_peak(run, torch.device(request.get("device", "cpu")))}
    except BaseException as err:  # report every failure (MemoryError included) to the parent
        return {"ok": False, "error": f"{type(err).__name__}: {err}".splitlines()[0][:300]}


def allocation_job(mib: float) -> Callable[[], object]:
    """A job with a known answer: its call allocates and touches ``mib`` MiB (checks the probe itself)."""
    n = int(mib * 2**20) // 4
    return lambda: torch.ones(n).sum()


# ------------------------------------------------------------------------------------ probe server


def _child_status(status: int) -> dict:
    """The result to report for a child that wrote nothing (killed, e.g. by the OOM killer, or crashed)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return {"ok": False, "error": f"memory probe killed by signal {sig}{' (out of memory?)' if sig == 9 else ''}"}
    return {"ok": False, "error": f"memory probe exited with status {os.WEXITSTATUS(status)}"}


def _fork_and_measure(request: dict) -> dict:
    """Fork a child that measures ``request``, writes JSON to a pipe and exits; return what it wrote."""
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
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    return json.loads(data) if data else _child_status(status)


def _zygote_main(result_fd: int) -> None:
    """Probe server: import torch once, then ``fork`` a fresh child per request read from stdin.

    The server never runs a torch operator, so forking it is safe (no OpenMP pool, no CUDA context to
    inherit). It relays each child's result (or how it died) as one JSON line on ``result_fd``.
    """
    import linmix  # noqa: F401  (preload: children start with everything imported)
    import torch.fx.experimental.symbolic_shapes  # noqa: F401  (autograd imports it, with sympy, on first use)

    out = os.fdopen(result_fd, "w")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            importlib.import_module(request["target"].partition(":")[0])  # once; later children inherit it
        except BaseException:  # noqa: BLE001 - the child reports the same error properly
            pass
        out.write(json.dumps(_fork_and_measure(request)) + "\n")
        out.flush()


def _source_root() -> str:
    """The folder the imported ``linmix`` package lives in, so the server imports the same code."""
    import linmix

    return str(Path(linmix.__file__).parent.parent)


class _Zygote:
    """The parent's handle on the probe server (started on first use, stopped at exit)."""

    def __init__(self) -> None:
        import subprocess

        r, w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = _source_root() + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from linmix.bench.memprobe import _zygote_main; _zygote_main({w})"],
            stdin=subprocess.PIPE, pass_fds=(w,), env=env, start_new_session=True, text=True)
        os.close(w)
        self.results = os.fdopen(r, "r")

    def request(self, payload: dict, timeout_s: float) -> dict:
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


def _zygote() -> _Zygote:
    global _ZYGOTE
    if _ZYGOTE is None or not _ZYGOTE.alive():
        import atexit

        _ZYGOTE = _Zygote()
        atexit.register(_stop_zygote)
    return _ZYGOTE


def _fresh_interpreter(payload: dict, timeout_s: float) -> dict:
    """Where ``os.fork`` is missing: one new interpreter per point (slower, same measurement)."""
    import subprocess

    code = ("import json, sys; from linmix.bench.memprobe import run_probe_request; "
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


def probe_memory(target: str, kwargs: dict, device: torch.device | str = "cpu",
                 timeout_s: float = 900.0) -> dict:
    """Run ``target(**kwargs)`` (``"module:function"``; it builds, warms up and returns the call to
    measure) in a fresh process and return ``{"ok", "peak_extra_mib", "baseline_mib", "method"}`` or
    ``{"ok": False, "error"}`` (a crash, a kill by the OOM killer, a timeout).
    """
    payload = {"target": target, "kwargs": kwargs, "device": str(device), "threads": torch.get_num_threads()}
    if hasattr(os, "fork"):
        return _zygote().request(payload, timeout_s)
    return _fresh_interpreter(payload, timeout_s)
