"""A child process in a lab namespace that prints JSON lines: the stream
tools (`python -m netfo.lab.stream ...`), used by the demo and the failover
bench, and `netfo events --json --follow` (netfo.lab.events)."""
from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
from typing import Optional

from .. import spawn
from ..errors import NetfoError


class Tool:
    """One `python -m netfo.lab.stream ARGS` (or another netfo command, argv)
    inside a namespace; its JSON lines are read by a thread (the watcher's
    keep coming while the demo runs)."""

    who = "demo: "              # how errors name the caller

    def __init__(self, name: str, ns: str, *args: str, argv: Optional[list] = None):
        self.name = name
        self.samples: list[dict] = []
        self.events: list[dict] = []
        # A session of its own: the terminal's Ctrl-C reaches only the demo,
        # which stops the tools itself (in order, collecting their results).
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *(argv or spawn.python("netfo.lab.stream", *args))],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, cwd=spawn.NEUTRAL_CWD)
        self.lines: "queue.Queue[Optional[dict]]" = queue.Queue()
        self.stderr = ""
        self.result: Optional[dict] = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if self.on_event(obj):
                continue
            if obj.get("event") == "result":
                self.result = obj
            self.lines.put(obj)
        self.lines.put(None)

    def on_event(self, obj: dict) -> bool:
        """A watcher's sample or netlink event: keep it (True), or let it
        through as an ordinary line (False)."""
        if obj.get("event") == "sample":
            self.samples.append(obj)
            return True
        if obj.get("event") in ("link", "neigh", "overrun"):
            self.events.append(obj)
            return True
        return False

    def _read_err(self) -> None:
        self.stderr = self.proc.stderr.read()

    def ready(self, timeout: float = 10) -> dict:
        try:
            obj = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise NetfoError(f"{self.who}{self.name} did not start within {timeout:.0f} s") from None
        if obj is None or obj.get("event") != "ready" or obj.get("error"):
            try:
                self.proc.wait(5)           # for its stderr
            except subprocess.TimeoutExpired:
                pass
            why = (obj or {}).get("error") or (self.stderr.strip().splitlines() or ["no output"])[-1]
            raise NetfoError(f"{self.who}{self.name} failed to start: {why}")
        return obj

    def stop(self, timeout: float = 5) -> Optional[dict]:
        """SIGTERM, wait for its result line (a receiver's is large); SIGKILL
        if it does not end."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout)               # it has read the last line at EOF
        return self.result
