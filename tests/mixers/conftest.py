"""Expands the contract's ``case`` arguments from the test module's ``MIXER_CLASSES`` (see mixer_contract.py)."""
from __future__ import annotations

from .mixer_contract import cases

#: argument name -> which cases it receives
CASE_FILTERS = {
    "case": lambda c: True,
    "causal_case": lambda c: c.causal,
    "bidirectional_case": lambda c: not c.causal,
}


def pytest_generate_tests(metafunc) -> None:
    for argname, keep in CASE_FILTERS.items():
        if argname in metafunc.fixturenames:
            chosen = [c for c in cases(dict(metafunc.module.MIXER_CLASSES)) if keep(c)]
            metafunc.parametrize(argname, chosen, ids=str)
