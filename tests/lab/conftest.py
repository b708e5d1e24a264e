"""Fixtures for lab tests: a fresh namespace lab per test and netfo in it.

Every lab has its own prefix (unique per run and test), and is removed on
teardown whatever the test did, with the netfo daemon inside it.  Every test
in this folder is marked `lab` (and skipped when not root), so
`pytest -m "not lab"` runs the rest as an ordinary user.
"""
from __future__ import annotations

import pytest

from support.harness import Netfo, needs_root, unique_prefix


@pytest.fixture
def lab():
    from netfo.lab import Lab
    lab = Lab(unique_prefix(), log=lambda *_: None)
    with lab:
        yield lab


@pytest.fixture
def wire_lab():
    from netfo.lab import Lab
    lab = Lab(unique_prefix(), wire_like=True, log=lambda *_: None)
    with lab:
        yield lab


@pytest.fixture
def netfo(lab):
    n = Netfo(lab).start()
    try:
        yield n
    finally:
        n.stop()


def pytest_collection_modifyitems(config, items):
    here = config.rootpath / "tests" / "lab"
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.lab)
            item.add_marker(needs_root)
