"""`netfo status IF --check`: one line and an exit code for monitoring
(Nagios-style: 0 OK, 1 warning, 2 critical).

    0  OK        the primary (VF) transmits
    1  DEGRADED  the standby (virtio) transmits: working, but not the fast path
    2  DOWN      no slave can transmit (frames are dropped), or no netfo daemon
"""
from __future__ import annotations

from typing import Optional, Tuple

OK, DEGRADED, DOWN = 0, 1, 2
LABELS = {OK: "OK", DEGRADED: "DEGRADED", DOWN: "DOWN"}


def check(ifname: str, st: Optional[dict]) -> Tuple[int, str]:
    """(exit code, line) from a daemon's status reply (None: no daemon)."""
    if st is None:
        return DOWN, f"DOWN: {ifname}: netfo is not running in this network namespace"
    active = st.get("active")
    slave = next((s["name"] for s in st.get("slaves", []) if s.get("role") == active), None)
    via = f"{active} {slave}" if slave else str(active)
    if active == "primary":
        return OK, f"OK: {ifname} transmits via {via}"
    if active == "standby":
        why = "forced" if st.get("forced") == "standby" else (
            "the primary cannot transmit" if any(s.get("role") == "primary" for s in st.get("slaves", []))
            else "no primary")
        return DEGRADED, f"DEGRADED: {ifname} transmits via {via} ({why})"
    return DOWN, f"DOWN: {ifname}: no slave can transmit (frames are dropped)"


def transmits(st: dict) -> bool:
    """`netfo status` exits 1 for a master through which nothing can be sent."""
    return st.get("active") is not None
