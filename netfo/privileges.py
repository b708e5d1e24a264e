"""Dropping the root capabilities the daemon does not need.

The daemon parses JSON from local users (the control socket) and ARP/NDP
frames from the network (the prober).  It runs as uid 0, but once it starts
up it keeps only:

    CAP_NET_ADMIN   links (rename, MTU, state, delete the TAP), addresses,
                    routes, TUNSETIFF/TUNSETPERSIST, /proc/sys/net writes
                    (net sysctls check CAP_NET_ADMIN in the netns' owner),
                    and the `nft`/`tc` it runs as children
    CAP_NET_RAW     AF_PACKET sockets on slaves enslaved later (a re-plugged
                    VF) and the probe observers

Everything else goes from the bounding, permitted, effective, inheritable
and ambient sets, and PR_SET_NO_NEW_PRIVS is set.  uid stays 0: the journal,
the log and the control socket's peers are checked by uid, and the
/proc/sys/net files by "euid 0 is the owner", so no CAP_DAC_OVERRIDE is
needed.  Children (`nft`, `tc`) run as uid 0 and get permitted = the
bounding set = these two (no_new_privs never raises them above ours).

Capabilities, the bounding set and no_new_privs are per *thread* in Linux
(capset(2) with pid 0 changes the calling thread only): threads made later
inherit them.  So `drop()` must run in the main thread before any thread
exists (the netlink reader, the datapath loops, the watchdog), which is why
the daemon calls it first thing in `up()`: what setup needs beyond parsing
is these two capabilities as well (the systemd unit's
CapabilityBoundingSet= says the same).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from typing import Iterable, Optional

log = logging.getLogger("netfo")

CAP_NET_ADMIN, CAP_NET_RAW, CAP_SETPCAP = 12, 13, 8
KEEP = (CAP_NET_ADMIN, CAP_NET_RAW)

PR_CAPBSET_READ, PR_CAPBSET_DROP = 23, 24
PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 38, 39
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                                ctypes.c_ulong, ctypes.c_ulong]
    return _libc


def _check(rc: int, what: str) -> int:
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return rc


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def mask(caps: Iterable[int]) -> int:
    m = 0
    for c in caps:
        m |= 1 << c
    return m


def get() -> tuple:
    """(effective, permitted, inheritable) of the calling thread, as bit masks."""
    hdr, data = _Header(LINUX_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    _check(_c().capget(ctypes.byref(hdr), data), "capget")
    return tuple(getattr(data[0], f) | getattr(data[1], f) << 32
                 for f in ("effective", "permitted", "inheritable"))


def _set(effective: int, permitted: int, inheritable: int) -> None:
    hdr, data = _Header(LINUX_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    for i in (0, 1):
        data[i].effective = (effective >> 32 * i) & 0xFFFFFFFF
        data[i].permitted = (permitted >> 32 * i) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> 32 * i) & 0xFFFFFFFF
    _check(_c().capset(ctypes.byref(hdr), data), "capset")


def drop(keep: Iterable[int] = KEEP) -> Optional[int]:
    """Keep only `keep` (where the process has them) in every set, and set
    no_new_privs.  Returns the mask kept, or None when there was nothing to
    do (not root: the checks after this say what is missing).  OSError if
    the kernel refuses a step."""
    if threading.active_count() > 1:
        # Other threads would keep everything (see the module doc).
        raise RuntimeError("privileges.drop() must run before any thread is started")
    eff, perm, _ = get()
    keep_mask = mask(keep) & perm
    libc = _c()
    # The bounding set first: dropping from it needs CAP_SETPCAP, which the
    # capset below takes away.  A cap already out of it needs nothing.
    can_setpcap = bool(eff & (1 << CAP_SETPCAP))
    for cap in range(last_cap() + 1):
        if keep_mask & (1 << cap):
            continue
        if libc.prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1:
            if not can_setpcap:
                raise OSError(1, f"cannot drop capability {cap} from the bounding set "
                                 f"without CAP_SETPCAP")
            _check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"PR_CAPBSET_DROP {cap}")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)   # EINVAL before 4.3: fine
    _set(keep_mask, keep_mask, 0)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    return keep_mask


def names(m: int) -> str:
    """CAP_NET_ADMIN,CAP_NET_RAW for a mask (the ones this module knows by name)."""
    known = {CAP_NET_ADMIN: "net_admin", CAP_NET_RAW: "net_raw", CAP_SETPCAP: "setpcap"}
    return ",".join(known.get(c, str(c)) for c in range(64) if m >> c & 1) or "none"


def drop_for_daemon() -> None:
    """The daemon's one call: drop, and say what was kept (a failure is
    logged, never fatal: the master matters more than the hardening)."""
    try:
        kept = drop()
    except (OSError, RuntimeError) as e:
        log.warning("could not drop capabilities: %s (the daemon keeps them)", e)
        return
    log.info("capabilities kept: %s; no_new_privs set", names(kept))
