"""Runs in the guest during a re-plug: when the new VF appeared, was brought
up, got its carrier, and sent its first frame (ms on the guest's clock).

The migration re-plug's outage is mostly the NIC's own link time, which
varies by most of a second from one re-plug to the next (e1000e's watchdog);
what a failover driver adds is the time from the carrier to the first frame
out of the VF, which this measures for each mode. It reads sysfs counters
that take no lock (not `carrier`, which takes the RTNL lock), every ms, and
exits once the first frame is out. One JSON line when ready, one at the end:

    {"event": "result", "up_ms", "carrier_ms", "first_tx_ms",   (from appearance)
     "standby_down_ms"}     (the virtio NIC's carrier loss, the migration's outage)
"""
from __future__ import annotations

import json
import os
import sys
import time

NET = "/sys/class/net"
POLL = 0.001


def _driver(name: str) -> str:
    try:
        return os.path.basename(os.readlink(f"{NET}/{name}/device/driver"))
    except OSError:
        return ""


def _read(name: str, attr: str) -> str:
    try:
        with open(f"{NET}/{name}/{attr}") as f:
            return f.read().strip()
    except OSError:
        return ""


def trace(driver: str, timeout: float) -> dict:
    """Until the new link's first frame is out (or timeout s)."""
    known = set(os.listdir(NET))
    standby = next((n for n in known if _driver(n) == "virtio_net"), "")
    downs = _read(standby, "carrier_down_count")
    print(json.dumps({"event": "ready"}), flush=True)
    end = time.monotonic() + timeout
    seen: dict = {}                     # mark -> monotonic time
    name = None
    marks = {"standby_down_ms": lambda: downs and _read(standby, "carrier_down_count") != downs,
             "up_ms": lambda: int(_read(name, "flags") or "0", 16) & 1,          # IFF_UP
             "carrier_ms": lambda: int(_read(name, "carrier_up_count") or "0") > 0,
             "first_tx_ms": lambda: int(_read(name, "statistics/tx_packets") or "0") > 0}
    while "first_tx_ms" not in seen and time.monotonic() < end:
        if name is None:
            name = next((n for n in os.listdir(NET)
                         if n not in known and _driver(n) == driver), None)
            if name is not None:
                seen["appeared"] = time.monotonic()
        for key, check in marks.items():
            if key not in seen and (name or key == "standby_down_ms") and check():
                seen[key] = time.monotonic()
        time.sleep(POLL)
    if name is None:
        return {"error": f"no new {driver} link"}
    if "first_tx_ms" in seen:
        # no frame leaves before up and carrier: one that came within the
        # same poll as the frame, after its own read, is dated by the frame
        for key in ("up_ms", "carrier_ms"):
            seen.setdefault(key, seen["first_tx_ms"])
    t0 = seen.pop("appeared")
    return {"name": name, **{k: round((t - t0) * 1000, 1) for k, t in seen.items()}}


def main() -> int:
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 30
    print(json.dumps({"event": "result", **trace(sys.argv[1], timeout)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
