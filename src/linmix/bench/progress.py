"""The one progress display every benchmark uses: a tqdm bar on stderr, or a silent stand-in.

Benchmarks report points done with :meth:`Progress.update`, say what runs now with :meth:`Progress.step`
and print a finished length's summary with :meth:`Progress.log` (written above the bar, so it survives).
"""
from __future__ import annotations

import sys


class Progress:
    """A bar of ``total`` points when ``enabled``; otherwise every method but :meth:`log` does nothing."""

    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        self.desc = desc
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="pt", dynamic_ncols=True, leave=True, file=sys.stderr)

    def step(self, what: str) -> None:
        """Show what is being measured now."""
        if self.bar is not None:
            self.bar.set_description(what)

    def update(self, n: int = 1) -> None:
        """Count ``n`` points as done."""
        if self.bar is not None and n:
            self.bar.update(n)

    def log(self, message: str) -> None:
        """One line on stderr (above the bar when there is one): notes a run should not hide."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
