"""Wires the group logic, netlink, the TAP and the fast path together.

`Daemon.up()` builds the master and undoes every step if one fails;
`Daemon.serve()` follows netlink until asked to stop; `Daemon.down()` puts
the machine back as it was.  Frames never pass through this module.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import selectors
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from pyroute2 import IPRoute

from . import control, frames, journal, probe
from .errors import NetfoError

try:
    from . import _fastpath
except ImportError as e:            # say it in one line: this is an install problem
    raise NetfoError(f"netfo's compiled datapath (netfo._fastpath) is missing ({e}): "
                     "reinstall netfo where a C compiler and the Python headers are "
                     "installed (apt-get install gcc python3-dev)") from None
from .group import Enslave, Group, Ignore, Link, Policy, Release, Role
from .kernel import links, master, packet, silence, tap

log = logging.getLogger("netfo")

RX_POLICIES = {"active": _fastpath.RX_ACTIVE, "kernel": _fastpath.RX_KERNEL,
               "all": _fastpath.RX_ALL}
TICK = 0.2          # s between polls of what netlink does not announce
STATUS_VERSION = 1


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


@dataclass
class SlaveState:
    """An enslaved link as the daemon tracks it (what to undo is in the journal)."""
    index: int
    name: str
    mcast: frozenset = frozenset()


class Daemon:
    def __init__(self, ifname: str, primary: Optional[str] = None, rx_policy: str = "active",
                 threads: int = 1, busy_poll: int = 0, policy: Optional[Policy] = None,
                 miimon: float = 0.01, notify_count: int = 1, notify_interval: float = 0.0,
                 resend: bool = True, prober: Optional[probe.Prober] = None):
        self.ifname = ifname
        self.threads = threads
        self.busy_poll = busy_poll
        self.policy = policy or Policy()
        self.miimon = miimon                    # s between live carrier reads (0: off)
        self.send_failovers = 0
        self.resend = resend
        self.prober = prober or probe.Prober([], [], 0.1, 3)
        self.observers: dict = {}               # Role -> socket seeing its ARP/ND
        self.sel: Optional[selectors.BaseSelector] = None
        self.next_probe = 0.0
        self.own_ips: set = set()
        self.notify_count, self.notify_interval = notify_count, notify_interval
        self.notify_due: list = []              # monotonic times of announcement rounds
        self.announced: Optional[int] = None    # datapath slot the last rounds went to
        self.pinned = primary
        self.rx_policy = rx_policy
        self.sby_name = standby_name(ifname)
        self.ipr = IPRoute()
        self.undo: list = []                    # (description, callable), LIFO
        self.slaves: dict = {}                  # Role -> SlaveState
        self.group: Optional[Group] = None
        self.dp: Optional[_fastpath.Datapath] = None
        self.tap_fd = -1
        self.master_index = 0
        self.mtu = 0
        self.mac = ""
        self.carrier: Optional[bool] = None
        self.mcast: frozenset = frozenset()
        self.promisc = False
        self.loops: list = []                   # datapath threads
        self.ctl: Optional[socket.socket] = None
        self.stop = threading.Event()
        self.journal: dict = {}
        self.logged: Optional[dict] = None      # last group event logged
        self.refused: dict = {}                 # Role -> why enslaving failed last
        self.started = time.time()

    # ------------------------------------------------------------------ up

    def up(self) -> None:
        """Build the master; on any failure leave the machine as it was."""
        try:
            self._up()
        except BaseException:
            self._unwind()
            raise

    def _step(self, what: str, undo: Callable[[], None]) -> None:
        self.undo.append((what, undo))

    def _unwind(self) -> None:
        while self.undo:
            what, fn = self.undo.pop()
            try:
                fn()
            except Exception as e:      # keep undoing the rest
                log.error("while undoing %s: %s", what, e)

    def _check(self) -> Link:
        if not has_net_admin():
            raise NetfoError("netfo needs root (CAP_NET_ADMIN): run it with sudo")
        if not os.path.exists(tap.TUN_PATH):
            raise NetfoError(f"{tap.TUN_PATH} is missing: load the tun module (modprobe tun)")
        if len(self.ifname.encode()) > 15 or self.sby_name == self.ifname:
            raise NetfoError(f"interface name {self.ifname!r} is too long: the standby "
                             f"name {self.ifname}+'nsby' must fit in 15 bytes and differ from it")
        if control.running(self.ifname):
            raise NetfoError(f"netfo is already running on {self.ifname} "
                             f"(see: netfo status {self.ifname})")
        if journal.load(self.ifname) is not None:
            raise NetfoError(f"netfo did not shut down cleanly on {self.ifname}: "
                             f"run `netfo down {self.ifname}` to restore it first")
        for other in control.list_daemons():
            st = control.request(other, "status") or {}
            if self.ifname in [sl["name"] for sl in st.get("slaves", [])]:
                raise NetfoError(f"{self.ifname} is already in the failover group of {other} "
                                 f"(netfo down {other} first)")
        sb = links.get(self.ipr, name=self.ifname)
        if sb is None:
            raise NetfoError(f"no interface named {self.ifname}: pick one from `ip link`")
        if sb.kind == "tun":
            raise NetfoError(f"{self.ifname} is a TAP/TUN device; give the paravirtual NIC "
                             "(netfo makes the TAP itself)")
        if sb.arptype != 1:
            raise NetfoError(f"{self.ifname} is not an Ethernet interface")
        if links.get(self.ipr, name=self.sby_name) is not None:
            raise NetfoError(f"{self.sby_name} exists already: {self.ifname} seems to be in a "
                             "failover group (netfo status, or the kernel's net_failover)")
        return sb

    def _find_primary(self, group: Group) -> Optional[Link]:
        found = [l for l in links.dump(self.ipr) if group.wants(l) == Role.PRIMARY]
        if self.pinned and not found:
            other = links.get(self.ipr, name=self.pinned)
            if other is not None:
                raise NetfoError(f"--primary {self.pinned} has MAC {other.identity_mac}, "
                                 f"not {group.mac} of {self.ifname}")
            log.info("primary %s not present yet: waiting for it", self.pinned)
        for extra in found[1:]:
            log.warning("%s has the same MAC but a primary is taken: left alone (B-6)", extra.name)
        return found[0] if found else None

    def _up(self) -> None:
        sb = self._check()
        self.mac, self.mtu = sb.mac, sb.mtu
        self._watch()
        self.ctl = control.listen(self.ifname)
        self._step("control socket", self.ctl.close)

        group = Group(self.ifname, sb.mac, sb.index, self.pinned, policy=self.policy)
        primary = self._find_primary(group)
        if primary is not None and primary.max_mtu and primary.max_mtu < self.mtu:
            raise NetfoError(f"{primary.name} (same MAC) cannot take MTU {self.mtu} "
                             f"(its maximum is {primary.max_mtu}): lower {self.ifname}'s MTU first")

        self.journal = {
            "ifname": self.ifname, "pid": os.getpid(), "moved": False, "slaves": {},
            "standby": {"index": sb.index, "name": sb.name, "mtu": sb.mtu, "up": sb.up,
                        "addrs": links.addresses(self.ipr, sb.index),
                        "routes": links.routes(self.ipr, sb.index)},
        }
        journal.save(self.journal)
        self._step("journal", lambda: journal.forget(self.ifname))
        self._step("restore", lambda: journal.restore(self.ipr, self.journal))
        log.info("%s: renaming to %s", self.ifname, self.sby_name)
        links.rename(self.ipr, sb.index, self.sby_name)
        links.flush_addresses(self.ipr, sb.index, self.journal["standby"]["addrs"])

        self.tap_fd = tap.open_tap(self.ifname)
        self._step("TAP fd", self._close_tap)
        tap.set_persist(self.tap_fd, True)
        self.master_index = links.get(self.ipr, name=self.ifname).index
        group.master_index = self.master_index
        links.set_link(self.ipr, self.master_index, "configure the master",
                       address=self.mac, mtu=self.mtu)
        links.set_qdisc_noqueue(self.ifname)
        links.set_link(self.ipr, self.master_index, "bring the master up", state="up")
        # The addresses were valid on this link a moment ago: no second DAD.
        links.add_addresses(self.ipr, self.master_index, self.journal["standby"]["addrs"],
                            links.IFA_F_NODAD)
        links.add_routes(self.ipr, self.master_index, self.journal["standby"]["routes"])
        self.journal["moved"] = True
        journal.save(self.journal)

        self.silencer = silence.Silencer(self.ifname)
        self.dp = _fastpath.Datapath(self.tap_fd, RX_POLICIES[self.rx_policy], self.threads)
        self.dp.set_busy_poll(self.busy_poll)
        self.dp.set_resend(self.resend)
        self.dp.watch_links(links.link_socket(blocking=False).detach())
        self.group = group
        self._step("slaves", self._release_all)
        self._resync()
        if Role.STANDBY not in self.slaves:
            raise NetfoError(f"could not enslave the standby {self.sby_name}: "
                             f"{self.refused.get(Role.STANDBY, 'see the log')}")
        runs = [self.dp.run] if self.threads == 1 else [self.dp.run_tx, self.dp.run_rx]
        for fn in runs:
            self.loops.append(threading.Thread(target=self._run_loop, args=(fn,),
                                               name=f"netfo-{fn.__name__}", daemon=True))
            self.loops[-1].start()
        self._step("datapath", self._stop_datapath)
        self._sync()
        group.failovers, group.last_failover = 0, None     # setup is no failover
        group.events.clear()
        log.info("%s: master up (index %d), standby %s, primary %s", self.ifname,
                 self.master_index, self.sby_name,
                 self.slaves[Role.PRIMARY].name if Role.PRIMARY in self.slaves else "none yet")

    def _run_loop(self, fn: Callable[[], None]) -> None:
        """A datapath loop's thread: a loop that cannot go on (OSError, e.g.
        the TAP is gone) stops the daemon as SIGTERM would."""
        try:
            fn()
        except OSError as e:
            log.error("datapath %s stopped: %s", fn.__name__, e)
            self.stop.set()

    def _resync(self) -> None:
        """Take the links as they are now (at up, and because events of our
        own setup may still be queued: replaying them passes old states)."""
        for link in links.dump(self.ipr):
            if link.index != self.master_index:
                self._apply(self.group.link_changed(link))

    # ------------------------------------------------------ enslave/release

    def _apply(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, Enslave):
                try:
                    self._enslave(a.role, a.link)
                except NetfoError as e:
                    log.error("%s not enslaved as %s: %s", a.link.name, a.role, e)
                    self.refused[a.role] = str(e)
                    self.group.reject(a.role)
            elif isinstance(a, Release):
                self._release(a.role, a.gone)
            elif isinstance(a, Ignore):
                log.warning("%s has %s's MAC but is left alone: %s", a.link.name, self.ifname, a.reason)

    def _enslave(self, role: Role, link: Link) -> None:
        """B-12/B-13: force the master's MTU, open, then hand it to the loop."""
        entry = {"master": self.ifname, "name": link.name, "role": str(role), "mtu": link.mtu,
                 "was_up": link.up, "disable_ipv6": None, "silenced_as": link.name}
        self.journal["slaves"][str(link.index)] = entry
        journal.save(self.journal)
        self.slaves[role] = SlaveState(link.index, link.name)
        try:
            if link.mtu != self.mtu:
                links.set_link(self.ipr, link.index, f"set {link.name} mtu {self.mtu}", mtu=self.mtu)
            entry["disable_ipv6"] = self.silencer.silence(link.name)
            journal.save(self.journal)
            if not link.up:
                links.set_link(self.ipr, link.index, f"bring {link.name} up", state="up")
            fd = packet.open_slave(link.name)
        except BaseException:
            self._release(role, gone=False)
            raise
        self.slaves[role].mcast = self._sync_mcast(fd, link.index, frozenset(), self.mcast)
        self.dp.set_slave(role, fd, link.index)
        # As it is now that it is up: its 'up' event may be queued behind
        # the event being handled, and must not find it counted as down.
        fresh = links.get(self.ipr, index=link.index)
        if fresh is not None:
            self.group.link_changed(fresh)
        if self.prober.enabled:
            self._observe(role, packet.observer(link.name))
        log.info("%s enslaved as %s (index %d)", link.name, role, link.index)

    def _release(self, role: Role, gone: bool) -> None:
        state = self.slaves.pop(role, None)
        if state is None:
            return
        if self.dp is not None:
            self.dp.set_ready(role, False)
            self.dp.set_slave(role, -1)     # the loop closes the old socket
        self._observe(role, None)
        self.prober.last_heard.pop(role, None)
        entry = self.journal["slaves"].pop(str(state.index), None)
        if entry is not None:
            entry["name"] = state.name
            journal.restore_slave(self.ipr, state.index, entry, gone)
            journal.save(self.journal)
        log.info("%s released from %s (%s)", state.name, role, "deleted" if gone else "restored")

    def _observe(self, role: Role, sock) -> None:
        """Replace role's probe observer (None: just close the old one)."""
        old = self.observers.pop(role, None)
        if old is not None:
            if self.sel is not None:
                self.sel.unregister(old)
            old.close()
        if sock is not None:
            self.observers[role] = sock
            if self.sel is not None:
                self.sel.register(sock, selectors.EVENT_READ, ("probe", role))

    def _release_all(self) -> None:
        for role in list(self.slaves):
            try:
                self._release(role, gone=False)
            except NetfoError as e:
                log.error("release %s: %s", role, e)

    def _sync_mcast(self, fd: int, ifindex: int, old: frozenset, new: frozenset) -> frozenset:
        for mac in new - old:
            packet.membership(fd, ifindex, packet.PACKET_MR_MULTICAST, mac, add=True)
        for mac in old - new:
            packet.membership(fd, ifindex, packet.PACKET_MR_MULTICAST, mac, add=False)
        return new

    # ------------------------------------------------------------ events

    def _sync(self) -> None:
        """Push the group's decisions to the loop and the master carrier."""
        for role in Role:
            link = self.group.slaves.get(role)
            self.dp.set_ready(role, bool(link and link.ready and role in self.slaves))
        active = self.group.active()
        self.dp.set_preferred(active if active is not None else Role.PRIMARY)
        if self.group.events and self.group.events[-1] is not self.logged:
            self.logged = self.group.events[-1]
            log.info("transmit via %s (%s, %s)", self.logged["to"], self.logged["reason"],
                     self.logged["slave"])
        now = self.dp.active()
        if now != self.announced:
            self.announced = now
            if now >= 0 and self.notify_count:
                t = time.monotonic()
                self.notify_due = [t + i * self.notify_interval for i in range(self.notify_count)]
        carrier = self.group.carrier
        if carrier != self.carrier:
            tap.set_carrier(self.tap_fd, carrier)
            self.carrier = carrier
            log.info("%s: carrier %s", self.ifname, "on" if carrier else "off")

    def _on_links(self, indexes: list) -> None:
        """Links some events were about, each read once as it is now: events
        can be stale (those of our own setup are still queued) and come in
        bursts (a carrier change is several messages), so what counts is
        the state now, once per burst."""
        for index in dict.fromkeys(indexes):
            if self.stop.is_set():
                return
            self._guarded(self._on_link, index)
        self._guarded(self._sync)

    def _on_link(self, index: int) -> None:
        role = self.group.role_of(index)
        if role is not None and role in self.slaves:
            self.dp.release(role)       # the loop's hold, if any, ends with this read
        link = links.get(self.ipr, index=index)
        if link is None:
            return self._on_gone(index)
        if link.index == self.master_index:
            return self._on_master(link)
        role = self.group.role_of(link.index)
        if role is not None and role in self.slaves and self.slaves[role].name != link.name:
            self.slaves[role].name = link.name
            self.journal["slaves"][str(link.index)]["name"] = link.name
            journal.save(self.journal)
        self._apply(self.group.link_changed(link))

    def _on_master(self, link: Link) -> None:
        if link.mac != self.mac:
            log.warning("%s: MAC change to %s reverted (B-40)", self.ifname, link.mac)
            links.set_link(self.ipr, self.master_index, "revert master MAC", address=self.mac)
        if link.mtu != self.mtu:
            self._change_mtu(link.mtu)

    def _change_mtu(self, new: int) -> None:
        """B-36: primary first, then standby; any refusal rolls all back."""
        done = []
        try:
            for role in (Role.PRIMARY, Role.STANDBY):
                state = self.slaves.get(role)
                if state is not None:
                    links.set_link(self.ipr, state.index, f"set {state.name} mtu {new}", mtu=new)
                    done.append(state)
        except NetfoError as e:
            log.error("%s: MTU %d refused, rolled back to %d: %s", self.ifname, new, self.mtu, e)
            for state in done:
                links.set_link(self.ipr, state.index, "roll back MTU", mtu=self.mtu)
            links.set_link(self.ipr, self.master_index, "roll back master MTU", mtu=self.mtu)
            return
        log.info("%s: MTU %d -> %d", self.ifname, self.mtu, new)
        self.mtu = new

    def _on_gone(self, index: int) -> None:
        if index == self.master_index:
            log.error("%s was deleted behind netfo's back: stopping", self.ifname)
            self.master_index = 0
            self.stop.set()
            return
        self._apply(self.group.link_removed(index))

    def _announce(self) -> None:
        """Tell the network where the master is now (B-23: the kernel does
        not): gratuitous ARP, unsolicited NA, IGMP/MLD reports, sent straight
        out of the slave that transmits, so switches learn the new port."""
        t = time.monotonic()
        if not self.notify_due or self.notify_due[0] > t:
            return
        self.notify_due.pop(0)
        slot = self.dp.active()
        if slot < 0:
            return
        out = frames.announcements(self.mac, master.master_state(self.ifname),
                                   state_of=master.master_state)
        self._send(slot, out)
        log.info("announced %s on %s (%d frames)", self.ifname, Role(slot), len(out))

    def _send(self, slot: int, frames: list) -> None:
        """Frames of the control plane's own, straight out of a slave."""
        for frame in frames:
            try:
                os.write(self.dp.fd(slot), bytes(tap.VNET_HDR_LEN) + frame)
            except OSError as e:
                log.warning("sending on %s failed: %s", Role(slot), e)
                return

    def _heard(self, role: Role, sock) -> None:
        now = time.monotonic()
        while True:
            try:
                frame = sock.recv(2048)
            except BlockingIOError:
                return
            self.prober.heard(role, frame, self.own_ips, now)

    def _probe(self) -> None:
        """One probe round out of the transmitting slave, then judge paths."""
        state = master.master_state(self.ifname)
        self.own_ips = set(state["ip4"]) | set(state["ip6"])
        # Out of the slave that transmits; and out of every slave whose path
        # is down, or nothing would tell when it heals (when the active path
        # dies, the other slave stops hearing the flooded probes too).
        slots = {self.dp.active()} | {int(r) for r in self.slaves if r in self.group.broken}
        probes = self.prober.frames(self.mac, state)
        for slot in slots - {-1}:
            self._send(slot, probes)
        now = time.monotonic()
        active = self.group.active()
        for role in sorted(self.slaves, key=lambda r: r != active):     # the active one first
            alive = self.prober.alive(role, now)
            if role == active and not alive:
                # The others heard the probes the switch flooded back from
                # this path: their silence says nothing now. Give them a
                # fresh grace period, probing through them directly.
                for other in self.slaves:
                    if other != role:
                        self.prober.last_heard[other] = now
            if not alive and role not in self.group.broken:
                log.warning("%s: no answer to probes for %.0f ms: path down",
                            self.slaves[role].name, self.prober.interval * self.prober.missed * 1000)
                self.group.path_down(role, "probe")
            elif alive and role in self.group.broken:
                log.info("%s: probes answered again: path up", self.slaves[role].name)
                self.group.path_up(role)
        self._sync()

    def _poll_carrier(self) -> None:
        """miimon: read the live carrier bit, as the kernel's netlink
        notification of a carrier loss can lag by up to a second (B-21)."""
        for role, state in list(self.slaves.items()):
            link = self.group.slaves.get(role)
            if link is None or links.live_ready(state.index) in (None, link.ready):
                continue
            fresh = links.get(self.ipr, index=state.index)
            if fresh is not None:
                self.group.link_changed(fresh)
                self._sync()

    def _tick(self) -> None:
        """What netlink does not announce: the master's multicast list,
        switches the loop made itself, delays running out."""
        self.group.tick()
        failovers = self.dp.stats()["master"]["send_failovers"]
        if failovers != self.send_failovers:
            self.send_failovers = failovers
            now = self.dp.active()
            self.group.note("send-error", Role(now) if now >= 0 else None)
        self._sync()
        new = frozenset(master.mcast_list(self.master_index))
        if new != self.mcast:
            for role, state in self.slaves.items():
                fd = self.dp.fd(role)
                if fd >= 0:
                    state.mcast = self._sync_mcast(fd, state.index, state.mcast, new)
            self.mcast = new
        promisc = bool(links.flags(self.ipr, self.master_index) & links.IFF_PROMISC)
        if promisc != self.promisc:
            self.dp.set_promisc(promisc)
            self.promisc = promisc

    # ------------------------------------------------------------ serve

    def _watch(self) -> None:
        """Start following link events before any state is read (B-4 note).

        A thread of its own blocks on the netlink socket and queues each
        event for the main loop, which it wakes through a pipe. (The
        datapath reads link events too, and holds a failed slave down at
        once: see _fastpath.watch_links.)
        """
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.wake_r, wake_w = os.pipe()
        sock = links.link_socket()

        def reader() -> None:
            with sock:
                while not self.stop.is_set():
                    try:
                        data = sock.recv(1 << 16)
                    except OSError:             # ENOBUFS: the kernel dropped events
                        self.inbox.put(None)
                        os.write(wake_w, b"!")
                        continue
                    for index in links.link_events(data):
                        self.inbox.put(index)
                    os.write(wake_w, b"!")

        threading.Thread(target=reader, name="netfo-netlink", daemon=True).start()

    def serve(self, ready: Optional[Callable[[], None]] = None) -> None:
        """Follow netlink and the control socket until stopped."""
        sel = self.sel = selectors.DefaultSelector()
        sel.register(self.wake_r, selectors.EVENT_READ, "netlink")
        sel.register(self.ctl, selectors.EVENT_READ, "control")
        for role, sock in self.observers.items():
            sel.register(sock, selectors.EVENT_READ, ("probe", role))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        if ready:
            ready()
        next_tick = time.monotonic()
        while not self.stop.is_set():
            deadlines = [d for d in (self.group.next_deadline(),
                                     self.notify_due[0] if self.notify_due else None) if d]
            if self.prober.enabled:
                deadlines.append(self.next_probe)
            wait = min([TICK, self.miimon or TICK] +
                       [max(0.0, d - time.monotonic()) for d in deadlines])
            for key, _ in sel.select(wait):
                if isinstance(key.data, tuple):
                    self._guarded(self._heard, key.data[1], key.fileobj)
                elif key.data == "netlink":
                    os.read(self.wake_r, 4096)
                    indexes = []
                    while not self.inbox.empty():
                        indexes.append(self.inbox.get())
                    if None in indexes:
                        log.warning("netlink events were lost (socket overrun): "
                                    "re-reading every link")
                        for role in self.slaves:
                            self.dp.release(role)
                        self._guarded(self._resync)
                    self._on_links([i for i in indexes if i is not None])
                else:
                    self._serve_client()
            if self.stop.is_set() or not self.master_index:
                continue
            if self.miimon:
                self._guarded(self._poll_carrier)
            if self.notify_due:
                self._guarded(self._announce)
            if self.prober.enabled and time.monotonic() >= self.next_probe:
                self.next_probe = time.monotonic() + self.prober.interval
                self._guarded(self._probe)
            deadline = self.group.next_deadline()
            if deadline is not None and time.monotonic() >= deadline:
                self._guarded(self.group.tick)
                self._guarded(self._sync)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK
                self._guarded(self._tick)
        sel.close()
        self.sel = None

    @staticmethod
    def _guarded(fn, *args) -> None:
        """One failed event must not tear down a working master."""
        try:
            fn(*args)
        except NetfoError as e:
            log.error("%s", e)
        except Exception:
            log.exception("unexpected error (netfo keeps running)")

    def _serve_client(self) -> None:
        conn, _ = self.ctl.accept()
        with conn:
            conn.settimeout(5)
            try:
                line = conn.makefile().readline()
                if not line:
                    return              # a liveness probe (control.running)
                req = json.loads(line)
                cmd = req.get("cmd")
                if cmd == "status":
                    reply = self.status()
                elif cmd == "set":
                    reply = self._set(req)
                elif cmd == "events":
                    reply = {"events": list(self.group.events)}
                elif cmd == "down":
                    self.stop.set()
                    self.down()
                    reply = {"ok": True}
                else:
                    reply = {"error": f"unknown command {cmd!r}"}
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except (ValueError, OSError) as e:
                # A client that went away must never take the daemon down.
                log.warning("control client: %s", e)

    def _set(self, req: dict) -> dict:
        """Manual control: force a slave to transmit, or go back to auto."""
        want = req.get("active")
        roles = {"primary": Role.PRIMARY, "standby": Role.STANDBY, "auto": None}
        if want not in roles:
            return {"error": f"active must be primary, standby or auto, not {want!r}"}
        self.group.force(roles[want])
        self._sync()
        return {"ok": True, "active": str(self.group.active()) if self.group.active() is not None else None}

    # ------------------------------------------------------------ status

    def status(self) -> dict:
        stats = self.dp.stats()
        active = self.group.active()
        master = stats["master"]
        slaves = []
        for role in Role:
            link = self.group.slaves.get(role)
            if link is None or role not in self.slaves:
                continue
            slaves.append({
                "role": str(role), "name": self.slaves[role].name, "index": link.index,
                "admin_up": link.up, "carrier": link.carrier, "ready": link.ready,
                "transmitting": role == active, "stats": stats["slots"][role],
            })
        drops = {k[len("drop_"):]: v for k, v in master.items() if k.startswith("drop_")}
        return {
            "version": STATUS_VERSION,
            "master": {"name": self.ifname, "index": self.master_index, "mac": self.mac,
                       "mtu": self.mtu, "carrier": bool(self.carrier),
                       "stats": {k: v for k, v in master.items() if not k.startswith("drop_")
                                 and k not in ("send_failovers", "link_holds")}},
            "active": str(active) if active is not None else None,
            "rx_policy": self.rx_policy,
            "slaves": slaves,
            "drops": drops,
            "forced": str(self.group.forced) if self.group.forced is not None else None,
            "policy": {"updelay_ms": self.policy.updelay * 1000,
                       "downdelay_ms": self.policy.downdelay * 1000,
                       "reselect": self.policy.reselect, "miimon_ms": self.miimon * 1000},
            "events": list(self.group.events)[-5:],
            # the loop's own switches are counted once, when the group follows them
            "failovers": self.group.failovers,
            "loop_switches": master["link_holds"] + master["send_failovers"],
            "last_failover": self.group.last_failover,
            "pid": os.getpid(),
            "since": self.started,
        }

    # ------------------------------------------------------------ down

    def down(self) -> None:
        """Stop forwarding and put everything back as before up()."""
        self._unwind()

    def _stop_datapath(self) -> None:
        self.dp.stop()
        for t in self.loops:
            t.join(5)

    def _close_tap(self) -> None:
        os.close(self.tap_fd)       # the TAP is persistent: restore() deletes it
        self.tap_fd = -1
