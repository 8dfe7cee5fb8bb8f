"""Every ```python block of README.md runs as written (in a temporary directory, so files it writes land there)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every fenced python block (indented fences, e.g. in lists, dedented)."""
    blocks = []
    for match in FENCE.finditer(text):
        indent = match["indent"]
        code = "".join(line[len(indent):] if line.startswith(indent) else line
                       for line in match["code"].splitlines(keepends=True))
        blocks.append((text.count("\n", 0, match.start()) + 1, code))
    return blocks


BLOCKS = python_blocks(README.read_text()) if README.is_file() else []


def test_the_extractor_finds_blocks():
    sample = "x\n```python\na = 1\n```\n\n  ```python\n  b = 2\n  ```\n```bash\nls\n```\n"
    assert python_blocks(sample) == [(2, "a = 1\n"), (6, "b = 2\n")]
    assert BLOCKS, "README.md has no ```python block"


@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_python_block_runs(line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
