"""Tests of linmix.mixers (a package, so that module names like test_registry may repeat elsewhere)."""
