"""The slaves' lifecycle, and the master's settings they must follow.

Enslaving (B-12/B-13): journal first, silence the slave's own stack, force
the master's MTU, bring it up, open its packet socket, join the master's
multicast groups and hand the socket to the loop.  Releasing undoes that
from the journal entry.  While enslaved, the master's multicast list and
promiscuity are copied to the slaves (B-14: a TAP announces neither), and
the master's MAC (B-40) and MTU (B-36) are policed.  Each of these is an
event in the master's EventLog.
"""
from __future__ import annotations

import logging
import os
import selectors
from dataclasses import dataclass
from typing import Optional

from pyroute2 import IPRoute

from . import journal
from .build import Builder
from .errors import NetfoError
from .events import EventLog
from .group import Link, Role
from .kernel import links, master, packet, silence, tap
from .probe import Prober

log = logging.getLogger("netfo")


@dataclass
class SlaveState:
    """An enslaved link as the daemon tracks it (what to undo is in the journal)."""
    index: int
    name: str
    mcast: frozenset = frozenset()


class Slaves:
    def __init__(self, ipr: IPRoute, builder: Builder, dp, events: EventLog, prober: Prober,
                 mac: str, mtu: int):
        self.ipr, self.builder, self.dp = ipr, builder, dp
        self.ifname = builder.ifname
        self.events, self.prober = events, prober
        self.mac, self.mtu = mac, mtu
        self.silencer = silence.Silencer(self.ifname)
        self.held: dict = {}                    # Role -> SlaveState
        self.refused: dict = {}                 # Role -> why enslaving failed last
        self.observers: dict = {}               # Role -> socket seeing its ARP/ND
        self.selector: Optional[selectors.BaseSelector] = None   # set while serving
        self.mcast: frozenset = frozenset()
        self.promisc = False
        self.reinstalls = 0                     # firewall reloads undone (status)
        self.last_reinstall: Optional[float] = None     # wall time of the last

    def __contains__(self, role: Role) -> bool:
        return role in self.held

    def __getitem__(self, role: Role) -> SlaveState:
        return self.held[role]

    @property
    def journal(self) -> dict:
        return self.builder.journal

    # -- enslave / release -------------------------------------------------

    def enslave(self, role: Role, link: Link, fds: Optional[list] = None) -> Optional[Link]:
        """Make link the slave in role; its state now that it is up (its
        'up' event may be queued behind the one being handled, and must not
        find it counted as down).  NetfoError: refused, left as it was.

        A link the journal already has (an adopted master's) keeps what it
        was before the first enslaving, to be restored at down.  fds: its
        packet sockets (one per queue of the daemon being replaced), handed
        over, already silenced and in the master's multicast groups (the
        first one's memberships); this daemon's queues take as many as
        they need and open the rest."""
        prior = self.journal["slaves"].get(str(link.index))
        handed = fds is not None
        chain = silence.chain_name(link.index)
        # What silencing changes is read and journalled before it is changed:
        # a daemon killed in between must leave a journal that restores it.
        entry = prior or {"master": self.ifname, "name": link.name, "role": str(role),
                          "mtu": link.mtu, "was_up": link.up, "chain": chain}
        # the sysctls silencing changes (an older netfo's entry lacks some:
        # those are as they were before it)
        sysctls = silence.saved(link.name)
        for key, value in sysctls.items():
            entry.setdefault(key, value)
        entry.update(name=link.name, role=str(role))
        if not handed:
            entry["chain"] = chain
        self.journal["slaves"][str(link.index)] = entry
        self.builder.save()
        self.held[role] = SlaveState(link.index, link.name)
        fds = list(fds or ())
        # Every millisecond from here to IFF_UP delays the VF's carrier (a
        # real VF trains its link for seconds after that): only what must
        # precede up comes first, all of it in-process.
        try:
            if not handed:
                # sysctls and the ingress chain in place before the link can
                # receive anything: its stack never answers for the master
                self.silencer.silence(link.name, link.index, sysctls)
            if link.mtu != self.mtu:
                # while down: a NIC resets its link on an MTU change
                links.set_link(self.ipr, link.index, f"set {link.name} mtu {self.mtu}", mtu=self.mtu)
            if not link.up:
                links.set_link(self.ipr, link.index, f"bring {link.name} up", state="up")
            # BIG TCP / HW-GRO: a slave may aggregate frames above 64 KB,
            # which neither the loop's buffers nor a virtio-net header carry:
            # capped while enslaved (journalled first, restored at release),
            # before the packet sockets can see one.  Read after up: nothing
            # of it is needed before, and what was not capped needs no undo.
            sizes = links.max_sizes(self.ipr, link.index)
            entry.setdefault("max_sizes", sizes)
            if any(v > links.MAX_GSO for v in sizes.values()):
                self.builder.save()
                links.cap_max_sizes(self.ipr, link.index, link.name, sizes)
            if not handed:
                fds = packet.open_slaves(link.name, len(self.dp))
                mcast = self._sync_mcast(fds[0], link.index, frozenset(), self.mcast)
            else:
                fds = self._requeue(link.name, fds)
                mcast = self.mcast
        except BaseException:
            for fd in fds:
                if fd >= 0:
                    os.close(fd)
            self.release(role, gone=False)
            raise
        self.held[role].mcast = mcast
        self.dp.set_slave(role, fds, link.index)
        fresh = links.get(index=link.index)
        if self.prober.enabled:
            self.observe(role, packet.observer(link.name))
        log.info("%s enslaved as %s (index %d)", link.name, role, link.index)
        self.events.record("enslave", role=str(role), slave=link.name, index=link.index)
        return fresh

    def _requeue(self, name: str, fds: list) -> list:
        """The handed-over sockets of a slave, one per queue of this daemon:
        the first ones (the first keeps the memberships), the others closed
        (their share of the frames goes to the rest of the fanout group
        once the old daemon's copies close too), or more opened into the
        same group."""
        n = len(self.dp)
        kept = [fd for fd in fds if fd >= 0]
        for fd in kept[n:]:
            os.close(fd)
        fds[:] = kept[:n]            # in place: the caller closes them on failure
        mine = len(fds)
        while len(fds) < n:
            fds.append(packet.open_slave(name, muted=True))
        if n > 1 and len(fds) > mine:
            packet.join_fanout(fds)
        for fd in fds[mine:]:
            packet.unmute(fd)
        return fds

    def release(self, role: Role, gone: bool) -> None:
        state = self.held.pop(role, None)
        if state is None:
            return
        if self.dp is not None:
            self.dp.set_ready(role, False)
            try:
                self.dp.set_slave(role, [])     # the loops close the old sockets
            except OSError as e:                # a wedged loop: still undo the rest
                log.error("%s: the datapath did not take the release: %s", state.name, e)
        self.observe(role, None)
        self.prober.forget(role)
        entry = self.journal["slaves"].get(str(state.index))
        if entry is not None:
            entry["name"] = state.name
            # Out of the journal only once undone: a step that fails stays
            # for the restore at down (which says what is left).
            journal.restore_slave(self.ipr, state.index, entry, gone)
            del self.journal["slaves"][str(state.index)]
            self.builder.save()
        log.info("%s released from %s (%s)", state.name, role, "deleted" if gone else "restored")
        self.events.record("release", role=str(role), slave=state.name, gone=gone)

    def forget_stale(self) -> None:
        """After adopting: journal entries of links that are no longer
        slaves (a VF unplugged while no daemon ran) are undone now."""
        held = {str(s.index) for s in self.held.values()}
        for index, entry in list(self.journal["slaves"].items()):
            if index not in held:
                gone = links.get(index=int(index)) is None
                journal.restore_slave(self.ipr, int(index), entry, gone)
                del self.journal["slaves"][index]
                log.info("%s: no longer a slave (%s)", entry["name"], "gone" if gone else "restored")
        self.builder.save()

    def release_all(self) -> None:
        for role in list(self.held):
            try:
                self.release(role, gone=False)
            except NetfoError as e:
                log.error("release %s: %s", role, e)

    def renamed(self, role: Role, name: str) -> None:
        """udev (or the user) renamed an enslaved link: the journal follows."""
        state = self.held.get(role)
        if state is not None and state.name != name:
            state.name = name
            self.journal["slaves"][str(state.index)]["name"] = name
            self.builder.save()

    def observe(self, role: Role, sock) -> None:
        """Replace role's probe observer (None: just close the old one)."""
        old = self.observers.pop(role, None)
        if old is not None:
            if self.selector is not None:
                self.selector.unregister(old)
            old.close()
        if sock is not None:
            self.observers[role] = sock
            if self.selector is not None:
                self.selector.register(sock, selectors.EVENT_READ, ("probe", role))

    def keep_silent(self, cause: Optional[str] = None) -> None:
        """Put back the silencing a firewall reload (`nft flush ruleset`,
        firewalld) or a sysctl reload took from the slaves.  cause: who
        removed something of our table, as nftables announced it; None on
        the periodic check, which catches what has no announcement
        (the sysctls) or whose announcement was lost."""
        fixed = self.silencer.repair([(s.name, s.index) for s in self.held.values()])
        if not fixed:
            return
        self.reinstalls += 1
        cause = cause or "periodic check"
        log.warning("%s: the slaves' silencing was removed (cause: %s): re-installed %s",
                    self.ifname, cause, ", ".join(fixed))
        e = self.events.record("firewall", restored=fixed, cause=cause)
        self.last_reinstall = e["time"]

    # -- what the master sets, copied or policed -----------------------------

    def _sync_mcast(self, fd: int, ifindex: int, old: frozenset, new: frozenset) -> frozenset:
        for mac in new - old:
            packet.membership(fd, ifindex, packet.PACKET_MR_MULTICAST, mac, add=True)
        for mac in old - new:
            packet.membership(fd, ifindex, packet.PACKET_MR_MULTICAST, mac, add=False)
        return new

    def follow_lists(self, master_index: int) -> None:
        """B-14: the master's multicast list and promiscuity, which no
        netlink event announces for a TAP: polled."""
        new = frozenset(master.mcast_list(master_index))
        if new != self.mcast:
            for role, state in self.held.items():
                fd = self.dp.fd(role)
                if fd >= 0:
                    state.mcast = self._sync_mcast(fd, state.index, state.mcast, new)
            self.mcast = new
        promisc = links.promiscuous(master_index)
        if promisc != self.promisc:
            self.dp.set_promisc(promisc)
            self.promisc = promisc

    def police(self, link: Link) -> None:
        """The master changed: its MAC is immutable (B-40), its MTU goes to
        the slaves or back (B-36)."""
        if link.mac != self.mac:
            log.warning("%s: MAC change to %s reverted (B-40)", self.ifname, link.mac)
            links.set_link(self.ipr, link.index, "revert master MAC", address=self.mac)
            self.events.record("mac-revert", mac=link.mac)
        if link.mtu != self.mtu:
            self._change_mtu(link.index, link.mtu)

    def _change_mtu(self, master_index: int, new: int) -> None:
        """B-36: primary first, then standby; any refusal rolls all back."""
        done = []
        try:
            for role in (Role.PRIMARY, Role.STANDBY):
                state = self.held.get(role)
                if state is not None:
                    links.set_link(self.ipr, state.index, f"set {state.name} mtu {new}", mtu=new)
                    done.append(state)
        except NetfoError as e:
            log.error("%s: MTU %d refused, rolled back to %d: %s", self.ifname, new, self.mtu, e)
            for state in done:
                links.set_link(self.ipr, state.index, "roll back MTU", mtu=self.mtu)
            links.set_link(self.ipr, master_index, "roll back master MTU", mtu=self.mtu)
            return
        log.info("%s: MTU %d -> %d", self.ifname, self.mtu, new)
        self.mtu = new
        self.events.record("mtu", mtu=new)

    # -- the control plane's own frames --------------------------------------

    def send(self, slot: int, frames: list) -> None:
        """Frames of the control plane's own, straight out of a slave."""
        for frame in frames:
            try:
                os.write(self.dp.fd(slot), bytes(tap.VNET_HDR_LEN) + frame)
            except OSError as e:
                log.warning("sending on %s failed: %s", Role(slot), e)
                return
