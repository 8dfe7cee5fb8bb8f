"""Sub-commands of this package (being written)."""
from __future__ import annotations


def register(subparsers) -> None:
    """Add this package's sub-commands to the ``linmix`` parser."""
