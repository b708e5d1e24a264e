"""`netfo up IF --foreground ARGS` in a lab namespace, for tests and benches.

One harness for every caller that runs the daemon itself (the lab tests,
bench.paths, bench.failover): start it through netfo.spawn inside the
namespace, its output in a log file; wait until `netfo status` answers (and,
optionally, until a predicate on the status holds); talk to it with `cli()`,
`status()`, `wait()`; `stop()` runs `netfo down` and kills the process if it
has not ended after a timeout.

Failures raise `error` (HarnessError here; a caller sets its own: the tests
AssertionError, the benches BenchError) with the log's last lines.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Callable, Optional

from .. import spawn
from ..errors import NetfoError


class HarnessError(NetfoError):
    """netfo did not start, or a command failed."""


def cli(ns: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`netfo ARGV` inside network namespace ns (a full name), as a user runs it."""
    return subprocess.run(["ip", "netns", "exec", ns, *spawn.netfo(*argv)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, cwd=spawn.NEUTRAL_CWD)


class Netfo:
    """`netfo up IFNAME --foreground ARGS` in the lab's `role` namespace."""

    error: type = HarnessError
    tail_lines = 3                      # of the log, in an error's message

    def __init__(self, lab, *args: str, ifname: str = "ens10", role: str = "guest",
                 logfile: Optional[str] = None, keep_log: bool = True):
        self.lab, self.args, self.ifname = lab, args, ifname
        self.ns = lab.namespaces.get(role, role)
        self.logfile = logfile or f"/tmp/netfo-{lab.prefix}.log"
        self.keep_log = keep_log        # False: the log is removed by stop()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    # -- talking to it
    def cli(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        try:
            p = cli(self.ns, *argv, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self.error(f"netfo {' '.join(argv)} timed out after {timeout:g} s") from None
        if check and p.returncode != 0:
            raise self.error(f"netfo {' '.join(argv)} failed: {p.stderr.strip()}")
        return p

    def status(self) -> dict:
        return json.loads(self.cli("status", self.ifname, "--json").stdout)

    def slave(self, role: str) -> Optional[dict]:
        return next((s for s in self.status()["slaves"] if s["role"] == role), None)

    def wait(self, pred: Callable[[dict], bool], timeout: float = 5.0,
             what: str = "condition") -> dict:
        """Poll status until pred(status) holds; returns that status."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if pred(st):
                return st
            if time.monotonic() > deadline:
                raise self.error(f"timed out waiting for {what}: {json.dumps(st)}")
            time.sleep(0.05)

    # -- its life
    def start(self, ready: Optional[Callable[[dict], bool]] = None, timeout: float = 15,
              what: str = "ready") -> "Netfo":
        """Start it; return once `netfo status` answers (and ready(status) holds)."""
        with open(self.logfile, "w") as log:
            # A session of its own: a Ctrl-C at the terminal reaches only the
            # caller, which stops netfo itself (netfo down restores the guest).
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns,
                 *spawn.netfo("up", self.ifname, "--foreground", *self.args)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=spawn.NEUTRAL_CWD, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise self.error(f"netfo up {' '.join((self.ifname, *self.args))} exited "
                                 f"{self.proc.returncode}: {self.tail()}")
            p = self.cli("status", self.ifname, "--json", check=False)
            if p.returncode == 0 and (ready is None or ready(json.loads(p.stdout))):
                return self
            if time.monotonic() > deadline:
                raise self.error(f"netfo up did not become {what} within {timeout:g} s: "
                                 f"{self.tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10) -> None:
        """`netfo down` (restores the namespace and ends the daemon); kill it if
        it is still there after timeout s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.cli("down", self.ifname, check=False)
            except NetfoError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if not self.keep_log:
            try:
                os.unlink(self.logfile)
            except OSError:
                pass

    def __enter__(self) -> "Netfo":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- its log
    def read_log(self) -> str:
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def tail(self, n: Optional[int] = None) -> str:
        lines = [l.strip() for l in self.read_log().splitlines()[-(n or self.tail_lines):]]
        return " | ".join(lines) or "(no log)"
