"""Running netfo in a lab's guest namespace, and names unique to one test."""
from __future__ import annotations

import os
import random
import string

import pytest

from netfo.lab import harness

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="lab tests need root (network namespaces)")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def unique_prefix() -> str:
    # NETFO_TEST_PREFIX: whose labs these are, on a machine several people test on
    return (os.environ.get("NETFO_TEST_PREFIX", "t") + f"{os.getpid() % 1000}"
            + "".join(random.choices(string.ascii_lowercase, k=3)))


class Netfo(harness.Netfo):
    """`netfo up ens10 --foreground` in the lab's guest namespace (netfo.lab.harness);
    failures are test failures, with the daemon's log."""

    error = AssertionError
    tail_lines = 40

    def __init__(self, lab, *args: str, **kw) -> None:
        # NETFO_TEST_TAP_IO=uring|syscalls|auto: the whole lab suite with
        # that TAP I/O (tests that choose one themselves keep theirs).
        forced = os.environ.get("NETFO_TEST_TAP_IO")
        if forced and "--tap-io" not in args:
            args = (*args, "--tap-io", forced)
        super().__init__(lab, *args, **kw)
