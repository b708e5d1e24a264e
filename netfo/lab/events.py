"""netfo's structured events, as `netfo events IF --json [--follow]` prints them.

One JSON object per line:

    {"time": wall_s, "mono": monotonic_s, "master": "ens10", "kind": K, ...}

  switch      from, to ("primary" / "standby" / null), slave (name or null),
              reason ("carrier", "deleted", "admin", "send-error", "manual",
              "probe", "delay", ...)
  carrier     carrier (bool): the master's carrier
  enslave     role, slave, index
  release     role, slave, gone
  path        role, slave, up
  mtu         mtu;  mac-revert  mac

`mono` is CLOCK_MONOTONIC, one clock for every namespace of the machine, so
it compares directly with the demo's and the bench's own times; `time` is
the wall clock. A line without `kind` and `mono` is not an event here.

`Events` is the stream tool that follows them in a namespace: the daemon
pushes each event as it records it (a subscription on its control socket),
after replaying its ring, so nothing is missed between the two.  `snapshot`
reads the ring (its last 1000) once; `Events.collect` merges both, for the
events recorded just before the follower was stopped.
"""
from __future__ import annotations

import json
import subprocess
import time
from typing import Iterable, Optional, Union

from .. import spawn
from .tool import Tool

def parse(line: Union[str, bytes, dict]) -> Optional[dict]:
    """One event (a JSON line, or the object already decoded); None for
    anything that is not one (another line, an older daemon's record)."""
    if isinstance(line, (str, bytes)):
        try:
            line = json.loads(line)
        except ValueError:
            return None
    if not isinstance(line, dict):
        return None
    kind, mono, wall = line.get("kind"), line.get("mono"), line.get("time")
    if not isinstance(kind, str) or not kind:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (mono, wall)):
        return None
    return line


def parse_lines(lines: Iterable[str]) -> list:
    return [e for e in map(parse, lines) if e is not None]


def merge(*streams: Iterable[dict]) -> list:
    """The events of several readings, each once, in `mono` order."""
    seen, out = set(), []
    for e in (e for s in streams for e in s):
        key = json.dumps(e, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(e)
    out.sort(key=lambda e: e["mono"])
    return out


def switches(events: Iterable[dict], master: Optional[str] = None) -> list:
    """[(mono, to, reason, slave)] of the switch events (of master, if given),
    each dated when the frames moved (loop_mono: the datapath moved first)."""
    return [(e.get("loop_mono", e["mono"]), e.get("to"), e.get("reason"), e.get("slave")) for e in events
            if e["kind"] == "switch" and (master is None or e.get("master") == master)]


def carrier(events: Iterable[dict], master: Optional[str] = None) -> list:
    """[(mono, on)] of the master's carrier changes."""
    return [(e["mono"], bool(e.get("carrier"))) for e in events
            if e["kind"] == "carrier" and (master is None or e.get("master") == master)]


def snapshot(ns: str, ifname: str, timeout: float = 10) -> list:
    """The daemon's ring of events, read once; [] if it does not answer."""
    try:
        p = subprocess.run(["ip", "netns", "exec", ns, *spawn.netfo("events", ifname, "--json")],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout, cwd=spawn.NEUTRAL_CWD)
    except subprocess.TimeoutExpired:
        return []
    return parse_lines(p.stdout.splitlines()) if p.returncode == 0 else []


class Events(Tool):
    """`netfo events IF --json --follow` in a namespace: its events, as they come.

    It prints no "ready" line: do not call ready(). collect() (while netfo
    still runs) stops it and adds the ring's events it may not have printed."""

    def __init__(self, ns: str, ifname: str, name: str = "the event follower"):
        self.ns, self.ifname = ns, ifname
        self.netfo_events: list = []
        self.arrived: list = []         # monotonic s each of netfo_events was read here
        super().__init__(name, ns, argv=spawn.netfo("events", ifname, "--json", "--follow"))

    def on_event(self, obj: dict) -> bool:
        e = parse(obj)
        if e is None:
            return False
        self.netfo_events.append(e)
        self.arrived.append(time.monotonic())
        return True

    def collect(self) -> list:
        self.stop(timeout=3)
        return merge(self.netfo_events, snapshot(self.ns, self.ifname))
