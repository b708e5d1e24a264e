"""Building the master, adopting one, and unbuilding it.

`check()` refuses what `up` must not touch (one clear line each) and says
what to do: build a fresh master, or adopt the one a dead daemon left
(its journal in /run/netfo, the persistent TAP marked with the journal's
id, the renamed standby).  `Builder` makes the master step by step, writing
the journal before each change and pushing an undo for it, so a failure
half-way, or `down`, unwinds exactly what was done, in reverse (and `netfo
down` after a crash finishes it from the journal).  Adopting changes no
address, route or link: it only attaches to the TAP again.
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Callable, NamedTuple, Optional

from pyroute2 import IPRoute

from . import control, journal, lifetimes, privileges
from .errors import NetfoError, already_running, no_interface
from .group import Group, Link, Role
from .kernel import links, listeners, tap

log = logging.getLogger("netfo")


def standby_name(ifname: str) -> str:
    """udev's name for a STANDBY virtio NIC (B-9), cut to IFNAMSIZ-1."""
    return (ifname + "nsby")[:15]


class Plan(NamedTuple):
    """What `up` will do: "fresh" (build a master from the NIC `standby`),
    "adopt" (take over the master of `journal`), or "redo" (up died before
    the master was complete: restore from `journal`, then build afresh)."""
    kind: str
    standby: Optional[Link] = None
    journal: Optional[dict] = None


def check(ipr: IPRoute, ifname: str, replacing: bool = False) -> Plan:
    """What `up` may do with ifname, or NetfoError saying why nothing.
    replacing: take the master over from its running daemon (netfo restart)."""
    sby_name = standby_name(ifname)
    if not privileges.get()[0] & privileges.mask([privileges.CAP_NET_ADMIN]):
        # root without it would fail half-way
        raise NetfoError("netfo needs root (CAP_NET_ADMIN): run it with sudo")
    if not os.path.exists(tap.TUN_PATH):
        raise NetfoError(f"{tap.TUN_PATH} is missing: load the tun module (modprobe tun)")
    if len(ifname.encode()) > 15 or sby_name == ifname:
        raise NetfoError(f"interface name {ifname!r} is too long: the standby "
                         f"name {ifname}+'nsby' must fit in 15 bytes and differ from it")
    if replacing:
        j = journal.load(ifname)
        if not control.running(ifname) or j is None:
            raise NetfoError(f"netfo is not running on {ifname}: nothing to restart "
                             f"(netfo up {ifname} starts it)")
        return adoptable(ipr, ifname, j, replacing=True)
    if control.running(ifname):
        raise already_running(ifname)
    j = journal.load(ifname)
    if j is not None and not journal.from_here(j) and not _is_tap(ifname):
        # Its namespace is gone (the file name's inode was reused): it
        # describes nothing here, and must not block this namespace's up.
        journal.retire(ifname)
        j = None
    if j is not None:
        return adoptable(ipr, ifname, j)
    for other in control.list_daemons():
        st = control.request(other, "status") or {}
        if ifname in [sl["name"] for sl in st.get("slaves", [])]:
            raise NetfoError(f"{ifname} is already in the failover group of {other} "
                             f"(netfo down {other} first)")
    sb = links.get(name=ifname)
    if sb is None:
        raise no_interface(ifname)
    if sb.kind == "tun":
        raise NetfoError(f"{ifname} is a TAP/TUN device; give the paravirtual NIC "
                         "(netfo makes the TAP itself)")
    if sb.arptype != 1:
        raise NetfoError(f"{ifname} is not an Ethernet interface")
    if links.get(name=sby_name) is not None:
        raise NetfoError(f"{sby_name} exists already: {ifname} seems to be in a "
                         "failover group (netfo status, or the kernel's net_failover)")
    return Plan("fresh", sb)


def _is_tap(ifname: str) -> bool:
    link = links.get(name=ifname)
    return link is not None and link.kind == "tun"


def adoptable(ipr: IPRoute, ifname: str, j: dict, replacing: bool = False) -> Plan:
    """The master a dead daemon left (or the running one, replacing), if it
    is netfo's and whole; else say why, having touched nothing."""
    journal.check_here(j, replacing)
    down = f"netfo down {ifname} restores the machine from the journal"
    if j.get("version", 1) < journal.VERSION:
        raise NetfoError(f"{ifname} was left by an older netfo whose journal cannot be "
                         f"adopted: {down}")
    if not j.get("moved") or not j.get("master"):
        return Plan("redo", journal=j)
    m = links.get(name=ifname)
    if m is None or m.index != j["master"]["index"]:
        raise NetfoError(f"{ifname} is no longer the master netfo made (index "
                         f"{j['master']['index']}): nothing touched; {down}")
    if m.kind != "tun" or links.alias(ipr, m.index) != journal.mark(j):
        raise NetfoError(f"{ifname} is a TAP that netfo did not make (no netfo mark on it): "
                         "nothing touched")
    sb = links.get(index=j["standby"]["index"])
    if sb is None or sb.name != standby_name(ifname):
        raise NetfoError(f"the standby {standby_name(ifname)} (index {j['standby']['index']}) "
                         f"is gone or renamed: nothing touched; {down}")
    if sb.identity_mac != j["master"]["mac"]:
        raise NetfoError(f"the standby {sb.name} has MAC {sb.identity_mac}, no longer "
                         f"{j['master']['mac']} of {ifname}: nothing touched; {down}")
    return Plan("adopt", sb, j)


def find_primary(ipr: IPRoute, group: Group, pinned: Optional[str], mtu: int) -> Optional[Link]:
    """The primary present at `up` (B-6: the first of several), checked
    for the MTU it must take (B-39, said before anything is changed)."""
    found = [l for l in links.dump(ipr) if group.wants(l) == Role.PRIMARY]
    if pinned and not found:
        other = links.get(name=pinned)
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
        self.tap_fd = -1                    # queue 0's
        self.tap_fds: list = []             # every queue's, queue 0 first
        self.master_index = 0
        self.listening: list = []           # (pid, comm): packet sockets on the NIC
        self.notes: list = []               # what `up` tells the operator to do

    def look_for_listeners(self) -> None:
        """Note the programs with a packet socket on the NIC (a DHCP client):
        before the daemon drops its capabilities, since reading another
        root process's fds needs them all."""
        try:
            index = socket.if_nametoindex(self.ifname)
        except OSError:
            return
        self.listening = listeners.on_link(index)

    def step(self, what: str, undo: Callable[[], None]) -> None:
        self.undo.append((what, undo))

    def unwind(self) -> None:
        """Undo every step, newest first, going on past failures (a failed
        restore keeps the journal: see restored())."""
        while self.undo:
            what, fn = self.undo.pop()
            try:
                fn()
            except Exception as e:      # keep undoing the rest
                log.error("while undoing %s: %s", what, e)

    def restored(self) -> None:
        """After unwind(): NetfoError, in one line, if the restore left
        something to do (the journal says what, for the next `netfo down`)."""
        if self.journal.get("left"):
            raise NetfoError(journal.left_line(self.journal))

    def save(self) -> None:
        journal.save(self.journal)

    def build(self, sb: Link) -> int:
        """Rename the NIC to the standby name, make the TAP master with its
        MAC and MTU, move addresses and routes; the master's ifindex."""
        self.journal = journal.new(self.ifname)
        self.journal["standby"] = {"index": sb.index, "name": sb.name, "mtu": sb.mtu,
                                   "up": sb.up, "addrs": links.addresses(self.ipr, sb.index),
                                   "routes": links.routes(self.ipr, sb.index)}
        self.save()
        self.keep_journal()
        sby_name = standby_name(self.ifname)
        log.info("%s: renaming to %s", self.ifname, sby_name)
        links.rename(self.ipr, sb.index, sby_name)
        links.flush_addresses(self.ipr, sb.index, self.journal["standby"]["addrs"])

        self.tap_fd = tap.open_tap(self.ifname)
        self.step("TAP fd", self._close_tap)
        tap.set_persist(self.tap_fd, True)
        self.master_index = links.get(name=self.ifname).index
        self.journal["master"] = {"index": self.master_index, "mac": sb.identity_mac}
        self.save()
        links.set_link(self.ipr, self.master_index, "configure the master",
                       address=sb.mac, mtu=sb.mtu, ifalias=journal.mark(self.journal))
        links.set_qdisc_noqueue(self.ipr, self.master_index, self.ifname)
        links.set_link(self.ipr, self.master_index, "bring the master up", state="up")
        # The addresses were valid on this link a moment ago: no second DAD.
        links.add_addresses(self.ipr, self.master_index, self.journal["standby"]["addrs"],
                            links.IFA_F_NODAD)
        links.add_routes(self.ipr, self.master_index, self.journal["standby"]["routes"])
        self.journal["moved"] = True
        self.save()
        self._advise(sby_name)
        return self.master_index

    def _advise(self, sby_name: str) -> None:
        """Say what the operator must do about leases that moved with their
        lifetimes, and about programs left listening on the standby."""
        leased = [(a, lifetimes.remaining(a)) for a in links.leased(self.journal["standby"]["addrs"])]
        if leased:
            what = ", ".join(f"{a['address']}/{a['prefixlen']} (valid "
                             f"{lifetimes.describe(left[0]) if left else 'expired'})"
                             for a, left in leased)
            self.notes.append(f"{self.ifname}: moved with what is left of its lifetime: {what}; "
                              f"its DHCP client (or SLAAC) must renew it on {self.ifname}, the "
                              f"master: restart the client there (README: DHCP)")
        for pid, comm in self.listening:
            self.notes.append(f"{comm} (pid {pid}) still listens on {sby_name}, the standby "
                              f"(a packet socket bound to the NIC): it hears nothing once the "
                              f"primary carries traffic; restart it on {self.ifname}")
        for note in self.notes:
            log.warning("%s", note)

    def keep_journal(self) -> None:
        """From now on a failure, or down, restores what the journal says."""
        self.step("restore", self._restore)

    def _restore(self) -> None:
        journal.restore(self.ipr, self.journal)
        journal.finish(self.journal)        # the journal goes only if all was restored

    def adopt(self, j: dict, tap_fd: Optional[int] = None, restore: bool = True) -> int:
        """Take over the master of journal j (see adoptable()): attach to
        its TAP, or use tap_fd, an fd already attached to it (systemd's fd
        store, the daemon being replaced).  Addresses, routes and the
        link stay as they are.  restore=False: a failure leaves the master
        alone (the daemon being replaced still serves it)."""
        self.journal = j
        if restore:
            self.keep_journal()
        if tap_fd is None:
            tap_fd = tap.open_tap(self.ifname)
        elif tap.name_of(tap_fd) != self.ifname:
            raise NetfoError(f"the TAP fd handed over is attached to {tap.name_of(tap_fd)!r}, "
                             f"not {self.ifname}")
        self.tap_fd = tap_fd
        self.step("TAP fd", self._close_tap)
        self.master_index = j["master"]["index"]
        return self.master_index

    def attach_queues(self, n: int, handed: list = ()) -> list:
        """The TAP fds of n queues, queue 0 (tap_fd) first: the further
        queues handed over by the daemon being replaced (beyond n: closed,
        their queues go with the old daemon's copies), then new ones."""
        extra = []
        self.step("TAP queues", lambda: [os.close(fd) for fd in extra])
        for fd in handed:
            if fd < 0:
                continue
            if len(extra) < n - 1 and tap.attached_to(fd, self.ifname):
                extra.append(fd)
            else:
                os.close(fd)
        while len(extra) < n - 1:
            extra.append(tap.open_tap(self.ifname))
        self.tap_fds = [self.tap_fd] + extra
        return self.tap_fds

    def claim(self) -> None:
        """This daemon owns the journal now (the dead or replaced one did)."""
        self.journal["pid"] = os.getpid()
        self.save()

    def _close_tap(self) -> None:
        os.close(self.tap_fd)       # the TAP is persistent: restore() deletes it
        self.tap_fd = -1
