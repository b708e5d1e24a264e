"""The event record of one master: a ring of structured events.

Every event is a dict with both clocks and the master's name,
    {"time": wall_s, "mono": monotonic_s, "master": "ens10", "kind": K, ...}
with, per kind K (this schema is what `netfo events --json` prints and what
the demo and the failover bench read, so it only ever grows):
    switch      from, to (roles or None), slave (name or None), reason, and
                loop_mono when the datapath moved first (it holds and takes
                slaves on link events by itself): when frames began to
                leave through `to`, before the control plane followed
    carrier     carrier (bool, the master's)
    enslave     role, slave, index
    release     role, slave, gone
    mtu         mtu
    mac-revert  mac (the MAC someone set on the master, now reverted)
    path        role, slave, up (bool)
    firewall    restored (list of what was missing and is back: "nft chain
                netfo_ens10 in_3 (ens11)", "disable_ipv6 on ens11"), cause
                (who removed it, as nftables announced: "nft (pid 812)";
                or "lost notifications", "periodic check")
The monotonic time lets a reader ask for what is newer than what it has
seen (`since`), the wall time lets people read it.

Listeners (the control server's subscribers, `netfo events --follow`) are
called with each event as it is recorded, in the recording thread (the
daemon's control loop): they must not block, and a failing one is logged,
never passed on to the part that recorded the event.
"""
from __future__ import annotations

import collections
import json
import logging
import time
from typing import Callable, Iterator, Optional

KINDS = ("switch", "carrier", "enslave", "release", "mtu", "mac-revert", "path", "firewall")
RING = 1000

log = logging.getLogger("netfo")


class EventLog:
    """The last RING events of one master, oldest first."""

    def __init__(self, master: str, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, size: int = RING):
        self.master = master
        self.clock, self.wall = clock, wall
        self._ring: collections.deque = collections.deque(maxlen=size)
        self.listeners: list = []           # callables, each given every new event

    def record(self, kind: str, **fields) -> dict:
        assert kind in KINDS, kind              # the schema is a contract: no ad-hoc kinds
        e = {"time": self.wall(), "mono": self.clock(), "master": self.master, "kind": kind,
             **fields}
        self._ring.append(e)
        for fn in list(self.listeners):
            try:
                fn(e)
            except Exception:
                log.exception("event listener failed (the event is recorded)")
        return e

    def since(self, mono: Optional[float] = None) -> list:
        """Events strictly newer than mono (all when None)."""
        return [e for e in self._ring if mono is None or e["mono"] > mono]

    def of(self, kind: str, since: Optional[float] = None) -> list:
        return [e for e in self.since(since) if e["kind"] == kind]

    def __iter__(self) -> Iterator[dict]:
        return iter(self._ring)

    def __len__(self) -> int:
        return len(self._ring)


def describe(e: dict) -> str:
    """One event for people, without its time (`netfo events`, the demo)."""
    kind, master = e.get("kind", "switch"), e.get("master") or "master"
    if kind == "switch":
        slave = e.get("slave")
        first = (f"; the datapath {1000 * (e['mono'] - e['loop_mono']):.1f} ms before"
                 if isinstance(e.get("loop_mono"), (int, float)) else "")
        return (f"{e.get('from') or 'none'} -> {e.get('to') or 'none'}  "
                f"({e.get('reason')}{', ' + slave if slave else ''}{first})")
    if kind == "carrier":
        return f"{master} carrier {'on' if e.get('carrier') else 'off'}"
    if kind == "enslave":
        return f"{e.get('slave')} enslaved as {e.get('role')} (index {e.get('index')})"
    if kind == "release":
        return f"{e.get('slave')} released from {e.get('role')} ({'deleted' if e.get('gone') else 'restored'})"
    if kind == "mtu":
        return f"{master} mtu {e.get('mtu')}"
    if kind == "mac-revert":
        return f"{master} MAC change to {e.get('mac')} reverted"
    if kind == "path":
        return f"{e.get('role')} path {'up' if e.get('up') else 'down'} ({e.get('slave')})"
    if kind == "firewall":
        return (f"{master} slaves' silencing re-installed: {', '.join(e.get('restored') or [])}"
                f" (cause: {e.get('cause')})")
    # a kind newer than this reader
    return f"{kind} " + json.dumps({k: v for k, v in e.items()
                                    if k not in ("time", "mono", "master", "kind")})
