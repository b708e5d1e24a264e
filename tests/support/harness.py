"""Running netfo in a lab's guest namespace, and names unique to one test."""
from __future__ import annotations

import json
import os
import random
import string
import subprocess
import time

import pytest

from netfo import spawn

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="lab tests need root (network namespaces)")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def unique_prefix() -> str:
    return f"t{os.getpid() % 1000}" + "".join(random.choices(string.ascii_lowercase, k=3))


class Netfo:
    """`netfo up ens10 --foreground` running in the lab's guest namespace."""

    def __init__(self, lab, *args: str, ifname: str = "ens10"):
        self.lab, self.args, self.ifname = lab, args, ifname
        self.proc = None
        self.logfile = f"/tmp/netfo-{lab.prefix}.log"

    def cli(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        p = self.lab.run("guest", *spawn.netfo(*argv), check=False, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"netfo {' '.join(argv)} failed: {p.stderr.strip()}")
        return p

    def start(self) -> "Netfo":
        self.log = open(self.logfile, "w")
        self.proc = self.lab.popen("guest", *spawn.netfo("up", self.ifname, "--foreground",
                                                          *self.args),
                                   stdout=self.log, stderr=subprocess.STDOUT, cwd=spawn.NEUTRAL_CWD)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"netfo up exited {self.proc.returncode}: {self.read_log()}")
            if self.cli("status", self.ifname, "--json", check=False).returncode == 0:
                return self
            time.sleep(0.05)
        raise AssertionError(f"netfo up did not become ready: {self.read_log()}")

    def read_log(self) -> str:
        with open(self.logfile) as f:
            return f.read()

    def status(self) -> dict:
        return json.loads(self.cli("status", self.ifname, "--json").stdout)

    def slave(self, role: str) -> dict | None:
        return next((s for s in self.status()["slaves"] if s["role"] == role), None)

    def wait(self, pred, timeout: float = 5.0, what: str = "condition") -> dict:
        """Poll status until pred(status) holds; returns that status."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if pred(st):
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {json.dumps(st)}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.cli("down", self.ifname, check=False)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.proc = None
