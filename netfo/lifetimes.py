"""What is left of an address's (or route's) lifetime when it is put back.

The kernel reports lifetimes as seconds remaining at the moment of the
read (IFA_CACHEINFO, RTA_CACHEINFO); netfo records that with the read's
monotonic time (CLOCK_MONOTONIC is one clock for all processes, so a later
`netfo down` can do the sum too) and, when it adds the address elsewhere,
gives it what is left.  A DHCP lease or a SLAAC address must never come out
permanent, nor live longer than its owner granted: its client (or the
router's next advertisement) is the only one that may extend it.
"""
from __future__ import annotations

import math
import time
from typing import Optional, Tuple

FOREVER = 0xFFFFFFFF            # INFINITY_LIFE_TIME: a permanent address


def finite(seconds: Optional[int]) -> bool:
    return seconds is not None and seconds != FOREVER


def left(recorded: Optional[float], read_at: Optional[float],
         now: Optional[float] = None) -> Optional[int]:
    """Seconds left of a lifetime that had `recorded` seconds at monotonic
    time read_at; FOREVER stays FOREVER (None: an old journal's entry,
    permanent too).  Rounded down: never longer than granted; 0 = used up."""
    if not finite(recorded):
        return FOREVER
    if read_at is None:
        return recorded
    elapsed = max(0.0, (time.monotonic() if now is None else now) - read_at)
    return max(0, math.floor(recorded - elapsed))


def remaining(entry: dict, now: Optional[float] = None) -> Optional[Tuple[int, int]]:
    """(valid, preferred) seconds left for an address entry of the journal
    (links.addresses()); None if it expired meanwhile (must not come back)."""
    valid = left(entry.get("valid"), entry.get("read_at"), now)
    if valid == 0:
        return None
    preferred = min(left(entry.get("preferred"), entry.get("read_at"), now), valid)
    return valid, preferred


def describe(seconds: int) -> str:
    return "forever" if not finite(seconds) else f"{seconds} s"
