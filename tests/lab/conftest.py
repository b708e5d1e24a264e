"""Fixtures for lab tests: a fresh namespace lab per test and netfo in it.

Every lab has its own prefix (unique per run and test), and is removed on
teardown whatever the test did, with the netfo daemon inside it.  Every test
in this folder is marked `lab` (and skipped when not root), so
`pytest -m "not lab"` runs the rest as an ordinary user.
"""
from __future__ import annotations

import glob
import os

import pytest

from support.harness import Netfo, needs_root, unique_prefix


def forget_reused_inodes(lab) -> None:
    """netfo's files in /run/netfo are named after a namespace's nsfs inode,
    which the kernel reuses: files a killed earlier run left for a gone
    namespace must not meet this lab's (netfo sets such a journal aside
    itself; tests that look at the journal's path must not see it)."""
    for name in lab.namespaces.values():
        ino = os.stat(os.path.join("/var/run/netns", name)).st_ino
        for f in glob.glob(f"/run/netfo/net{ino}-*"):
            os.unlink(f)


@pytest.fixture
def lab():
    from netfo.lab import Lab
    lab = Lab(unique_prefix(), log=lambda *_: None)
    with lab:
        forget_reused_inodes(lab)
        yield lab


@pytest.fixture
def wire_lab():
    from netfo.lab import Lab
    lab = Lab(unique_prefix(), wire_like=True, log=lambda *_: None)
    with lab:
        forget_reused_inodes(lab)
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
