"""Building the master, and unbuilding it.

`check()` refuses what `up` must not touch (one clear line each); `Builder`
makes the master step by step, writing the journal before each change and
pushing an undo for it, so a failure half-way, or `down`, unwinds exactly
what was done, in reverse (and `netfo down` after a crash finishes it from
the journal).
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Optional

from pyroute2 import IPRoute

from . import control, journal
from .errors import NetfoError
from .group import Group, Link, Role
from .kernel import links, tap

log = logging.getLogger("netfo")


def has_net_admin() -> bool:
    """CAP_NET_ADMIN in the effective set (root without it fails half-way)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 12))
    except OSError:
        pass
    return os.geteuid() == 0


def standby_name(ifname: str) -> str:
    """udev's name for a STANDBY virtio NIC (B-9), cut to IFNAMSIZ-1."""
    return (ifname + "nsby")[:15]


def check(ipr: IPRoute, ifname: str) -> Link:
    """The paravirtual NIC `up` may take over, or NetfoError saying why not."""
    sby_name = standby_name(ifname)
    if not has_net_admin():
        raise NetfoError("netfo needs root (CAP_NET_ADMIN): run it with sudo")
    if not os.path.exists(tap.TUN_PATH):
        raise NetfoError(f"{tap.TUN_PATH} is missing: load the tun module (modprobe tun)")
    if len(ifname.encode()) > 15 or sby_name == ifname:
        raise NetfoError(f"interface name {ifname!r} is too long: the standby "
                         f"name {ifname}+'nsby' must fit in 15 bytes and differ from it")
    if control.running(ifname):
        raise NetfoError(f"netfo is already running on {ifname} "
                         f"(see: netfo status {ifname})")
    if journal.load(ifname) is not None:
        raise NetfoError(f"netfo did not shut down cleanly on {ifname}: "
                         f"run `netfo down {ifname}` to restore it first")
    for other in control.list_daemons():
        st = control.request(other, "status") or {}
        if ifname in [sl["name"] for sl in st.get("slaves", [])]:
            raise NetfoError(f"{ifname} is already in the failover group of {other} "
                             f"(netfo down {other} first)")
    sb = links.get(ipr, name=ifname)
    if sb is None:
        raise NetfoError(f"no interface named {ifname}: pick one from `ip link`")
    if sb.kind == "tun":
        raise NetfoError(f"{ifname} is a TAP/TUN device; give the paravirtual NIC "
                         "(netfo makes the TAP itself)")
    if sb.arptype != 1:
        raise NetfoError(f"{ifname} is not an Ethernet interface")
    if links.get(ipr, name=sby_name) is not None:
        raise NetfoError(f"{sby_name} exists already: {ifname} seems to be in a "
                         "failover group (netfo status, or the kernel's net_failover)")
    return sb


def find_primary(ipr: IPRoute, group: Group, pinned: Optional[str], mtu: int) -> Optional[Link]:
    """The primary present at `up` (B-6: the first of several), checked
    for the MTU it must take (B-39, said before anything is changed)."""
    found = [l for l in links.dump(ipr) if group.wants(l) == Role.PRIMARY]
    if pinned and not found:
        other = links.get(ipr, name=pinned)
        if other is not None:
            raise NetfoError(f"--primary {pinned} has MAC {other.identity_mac}, "
                             f"not {group.mac} of {group.master}")
        log.info("primary %s not present yet: waiting for it", pinned)
    for extra in found[1:]:
        log.warning("%s has the same MAC but a primary is taken: left alone (B-6)", extra.name)
    primary = found[0] if found else None
    if primary is not None and primary.max_mtu and primary.max_mtu < mtu:
        raise NetfoError(f"{primary.name} (same MAC) cannot take MTU {mtu} "
                         f"(its maximum is {primary.max_mtu}): lower {group.master}'s MTU first")
    return primary


class Builder:
    """The undo stack and the journal of one master."""

    def __init__(self, ipr: IPRoute, ifname: str):
        self.ipr, self.ifname = ipr, ifname
        self.undo: list = []                # (description, callable), LIFO
        self.journal: dict = {}
        self.tap_fd = -1
        self.master_index = 0

    def step(self, what: str, undo: Callable[[], None]) -> None:
        self.undo.append((what, undo))

    def unwind(self) -> None:
        while self.undo:
            what, fn = self.undo.pop()
            try:
                fn()
            except Exception as e:      # keep undoing the rest
                log.error("while undoing %s: %s", what, e)

    def save(self) -> None:
        journal.save(self.journal)

    def build(self, sb: Link) -> int:
        """Rename the NIC to the standby name, make the TAP master with its
        MAC and MTU, move addresses and routes; the master's ifindex."""
        self.journal = {
            "ifname": self.ifname, "pid": os.getpid(), "moved": False, "slaves": {},
            "standby": {"index": sb.index, "name": sb.name, "mtu": sb.mtu, "up": sb.up,
                        "addrs": links.addresses(self.ipr, sb.index),
                        "routes": links.routes(self.ipr, sb.index)},
        }
        self.save()
        self.step("journal", lambda: journal.forget(self.ifname))
        self.step("restore", lambda: journal.restore(self.ipr, self.journal))
        sby_name = standby_name(self.ifname)
        log.info("%s: renaming to %s", self.ifname, sby_name)
        links.rename(self.ipr, sb.index, sby_name)
        links.flush_addresses(self.ipr, sb.index, self.journal["standby"]["addrs"])

        self.tap_fd = tap.open_tap(self.ifname)
        self.step("TAP fd", self._close_tap)
        tap.set_persist(self.tap_fd, True)
        self.master_index = links.get(self.ipr, name=self.ifname).index
        links.set_link(self.ipr, self.master_index, "configure the master",
                       address=sb.mac, mtu=sb.mtu)
        links.set_qdisc_noqueue(self.ifname)
        links.set_link(self.ipr, self.master_index, "bring the master up", state="up")
        # The addresses were valid on this link a moment ago: no second DAD.
        links.add_addresses(self.ipr, self.master_index, self.journal["standby"]["addrs"],
                            links.IFA_F_NODAD)
        links.add_routes(self.ipr, self.master_index, self.journal["standby"]["routes"])
        self.journal["moved"] = True
        self.save()
        return self.master_index

    def _close_tap(self) -> None:
        os.close(self.tap_fd)       # the TAP is persistent: restore() deletes it
        self.tap_fd = -1
