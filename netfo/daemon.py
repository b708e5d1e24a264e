"""The daemon: wiring, and one loop that feeds inputs to the group and
carries out its decisions.  Frames never pass through this module.

    build.py    checks, builds and unwinds the master (undo stack, journal)
    group.py    decides (who transmits, readiness, carrier, announce, actions)
    slaves.py   enslaves and releases, copies and polices the master's settings
    probe.py    judges paths from what the slaves hear
    server.py   answers control requests
    events.py   the event ring every part records into

`Daemon.up()` builds the master (or adopts the one a dead daemon left, or
takes it over from a running one: handover.py) and undoes every step if
one fails; `Daemon.serve()` runs the loop until asked to stop (or until a
datapath loop dies, or the master is handed over); `Daemon.down()` puts the
machine back as it was.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import queue
import selectors
import signal
import threading
import time
from typing import Callable, Optional

from pyroute2 import IPRoute

from . import build, control, exporter, frames, handover, journal, metrics, privileges, queues
from .config import Config
from .errors import NetfoError

try:
    from . import _fastpath
except ImportError as e:            # say it in one line: this is an install problem
    raise NetfoError(f"netfo's compiled datapath (netfo._fastpath) is missing ({e}): "
                     "reinstall netfo where a C compiler and the Python headers are "
                     "installed (apt-get install gcc python3-dev)") from None
from .group import Decision, Enslave, Group, Ignore, Release, Role
from .kernel import links, master, nftwatch
from .probe import Prober
from .server import Server
from .service import Service
from .slaves import Slaves

log = logging.getLogger("netfo")

RX_POLICIES = {"active": _fastpath.RX_ACTIVE, "kernel": _fastpath.RX_KERNEL,
               "all": _fastpath.RX_ALL}
TAP_IO = {"syscalls": _fastpath.TAP_IO_SYSCALLS, "uring": _fastpath.TAP_IO_URING,
          "uring-write": _fastpath.TAP_IO_URING_WRITE, "auto": _fastpath.TAP_IO_AUTO}
TICK = 0.2          # s between polls of what netlink does not announce
SILENCE_CHECK = 1.0  # s between checks that the slaves are still silenced
# The TAP's queue (tun's ring, txqueuelen frames) holds what the guest sends
# while one daemon's loops stop and the next one's start: 1 s at 10,000
# frames/s even on a loaded machine, then back to what it was.
HANDOVER_QLEN = 10000
QLEN_HOLD = 2.0     # s after the handover before the queue shrinks back


class Daemon:
    def __init__(self, ifname: str, config: Config = Config(), takeover: bool = False):
        self.ifname, self.config = ifname, config
        self.takeover = takeover                # replace the running daemon (netfo restart)
        self.handed_over = False                # this daemon gave the master to a new one
        self.adopted = False                    # the master was there already
        self.keep_carrier = False               # while adopting: see _resync
        self.saved_qlen: Optional[int] = None   # the TAP's txqueuelen before a handover
        self.inherited: dict = {}               # ifindex -> its packet socket fds handed over
        self.ipr = IPRoute()
        self.builder = build.Builder(self.ipr, ifname)
        self.prober = Prober(config.arp_targets, config.ns_targets,
                             config.probe_interval_s, config.probe_missed)
        self.group: Optional[Group] = None
        self.slaves: Optional[Slaves] = None
        self.server: Optional[Server] = None
        self.exporter: Optional[exporter.Exporter] = None     # --metrics-listen
        self.dp: Optional[queues.Queues] = None     # the datapaths, one per queue
        self.master_index = 0
        self.mac = ""
        self.carrier: Optional[bool] = None     # the TAP's, as last set
        self.notify_due: list = []              # monotonic times of announcement rounds
        self.own_ips: set = set()
        self.send_failovers = 0                 # the loop's counter, as last read
        self.loops: list = []                   # datapath threads
        self.loop_fds: list = []                # the loops' event fds
        self.loop_error: Optional[BaseException] = None
        self.sel: Optional[selectors.BaseSelector] = None
        self.nft_watch: Optional[nftwatch.Watch] = None
        self.nft_cause: Optional[str] = None    # who removed our nft table or chains
        self.next_probe = 0.0
        self.next_silence_check = 0.0
        self.stop = threading.Event()
        self.started = time.time()
        self.settled_at = 0.0                   # monotonic end of setup
        self.beat = 0.0                         # monotonic: the control loop's last turn
        self.service = Service(self)            # systemd: READY, STATUS, fd store, watchdog

    # ------------------------------------------------------------------ up

    def up(self) -> None:
        """Build the master; on any failure leave the machine as it was."""
        self.builder.look_for_listeners()
        privileges.drop_for_daemon()        # before any thread: capabilities are per thread
        try:
            self._up()
        except BaseException:
            self.builder.unwind()
            raise

    def _up(self) -> None:
        cfg = self.config
        if cfg.tap_io in ("uring", "uring-write") and _fastpath.uring_problem():
            raise NetfoError(f"--tap-io {cfg.tap_io}: {_fastpath.uring_problem()} (use "
                             f"--tap-io auto or syscalls)")      # before any change
        problem = queues.problem(cfg.queues, self.ifname)
        if problem:
            raise NetfoError(f"{self.ifname}: {problem}")
        plan = build.check(self.ipr, self.ifname, replacing=self.takeover)
        if plan.kind == "redo":
            log.info("%s: the last netfo died while setting up: restoring, then again",
                     self.ifname)
            journal.recover(self.ifname)
            plan = build.check(self.ipr, self.ifname)
        self.adopted = plan.kind == "adopt"
        if cfg.metrics_listen and not self.takeover:
            self._serve_metrics()           # a bad address fails up before any change
        self._watch()
        if not self.takeover:
            self._serve_control()
        taker = None
        handed_queues: list = []            # the old daemon's TAP fds of queues 1..
        if plan.kind == "fresh":
            sb = plan.standby
            self.group = Group(self.ifname, sb.mac, sb.index, cfg.primary, policy=cfg.policy())
            build.find_primary(self.ipr, self.group, cfg.primary, sb.mtu)
            self.master_index = self.builder.build(sb)
        elif self.takeover:
            taker = handover.Taker(self.ifname)
            self.builder.step("handover", taker.close)
            old, per_queue = taker.ask()    # the old daemon forwards on meanwhile
            self.inherited = {s["index"]: [q[1 + i] for q in per_queue]
                              for i, s in enumerate(old["slots"])}
            handed_queues = [q[0] for q in per_queue[1:]]
            self.master_index = self.builder.adopt(plan.journal, per_queue[0][0], restore=False)
        else:
            self.master_index = self.builder.adopt(plan.journal, handover.from_systemd(self.ifname))
        if plan.kind != "fresh":
            sb = plan.standby
            self.group = Group(self.ifname, sb.mac, sb.index, cfg.primary, policy=cfg.policy())
            m = links.get(index=self.master_index)
            self.carrier = m.carrier if m is not None else None
            log.info("%s: %s the master (index %d)", self.ifname,
                     "taking over" if self.takeover else "adopting", self.master_index)
        self.mac = sb.mac
        self.group.master_index = self.master_index

        try:
            self.dp = queues.Queues([
                _fastpath.Datapath(fd, RX_POLICIES[cfg.rx_policy], cfg.threads, TAP_IO[cfg.tap_io])
                for fd in self.builder.attach_queues(cfg.queues, handed_queues)])
        except OSError as e:                # io_uring set-up (e.g. locked memory)
            raise NetfoError(f"{self.ifname}: {e.strerror or e}") from None
        log.info("%s: TAP I/O: %s%s", self.ifname, self.dp.tap_io(),
                 f" (--tap-io auto: {_fastpath.uring_problem() or os.strerror(self.dp.uring_error())})"
                 if self.dp.uring_error() else "")
        self.dp.set_busy_poll(cfg.busy_poll)
        self.dp.set_gro(cfg.gro == "on")
        self.dp.set_resend(cfg.resend)
        self.dp.watch_links(lambda: links.link_socket(blocking=False).detach())
        self.dp.set_miimon(cfg.miimon)
        self.group.loop = self._loop_sending
        self.slaves = Slaves(self.ipr, self.builder, self.dp, self.group.events, self.prober,
                             sb.mac, sb.mtu)
        if plan.kind != "fresh":            # the slaves are in the master's groups already
            self.slaves.mcast = frozenset(master.mcast_list(self.master_index))
        if not self.takeover:
            self.builder.step("slaves", self.slaves.release_all)
        self._resync(first=sb.index, keep_carrier=plan.kind != "fresh")
        if Role.STANDBY not in self.slaves:
            raise NetfoError(f"could not enslave the standby {build.standby_name(self.ifname)}: "
                             f"{self.slaves.refused.get(Role.STANDBY, 'see the log')}")
        if plan.kind != "fresh":
            self.slaves.forget_stale()
        if taker is not None:
            self.saved_qlen = links.txqlen(self.ipr, self.master_index)
            links.set_link(self.ipr, self.master_index, "grow the TAP's queue for the handover",
                           txqlen=max(HANDOVER_QLEN, self.saved_qlen))
            taker.release()                 # the old loops stop: ours start right away
            self._serve_control()
            if cfg.metrics_listen:
                self._serve_metrics(late=True)
            self.builder.keep_journal()
            self.builder.step("slaves", self.slaves.release_all)
        if plan.kind != "fresh":
            self.builder.claim()
        for name, fn in self.dp.runs(cfg.threads):
            self.loops.append(threading.Thread(target=self._run_loop, args=(fn,),
                                               name=name, daemon=True))
            self.loops[-1].start()
        self.builder.step("datapath", self._stop_datapath)
        self._follow_loop(counters=False)
        self.group.settled()                    # setup is no failover
        self.settled_at = time.monotonic()
        log.info("%s: master up (index %d), standby %s, primary %s%s", self.ifname,
                 self.master_index, build.standby_name(self.ifname),
                 self.slaves[Role.PRIMARY].name if Role.PRIMARY in self.slaves else "none yet",
                 f", {len(self.dp)} queues" if len(self.dp) > 1 else "")

    def _run_loop(self, fn: Callable[[], None]) -> None:
        """A datapath loop; one that dies takes the daemon down with it (a
        master that forwards nothing must not look healthy)."""
        try:
            fn()
        except BaseException as e:
            if self.loop_error is None:
                self.loop_error = e
            log.error("datapath loop %s died: %s: stopping", fn.__name__, e)
            self.stop.set()
            self._wake()

    def _serve_control(self) -> None:
        ctl = control.listen(self.ifname)
        self.builder.step("control socket", ctl.close)
        self.server = Server(ctl, self)

    def _serve_metrics(self, late: bool = False) -> None:
        """--metrics-listen (exporter.py).  late: taking over, where the old
        daemon has just closed the port; a failure then costs the endpoint
        only (logged), as the master is ours already."""
        try:
            sock = exporter.bind(self.config.metrics_listen)
        except NetfoError as e:
            if not late:
                raise
            log.error("%s: metrics not served", e)
            return
        self.exporter = exporter.Exporter(sock, lambda: metrics.render([self.server.status({})]))
        self.builder.step("metrics endpoint", self.exporter.close)

    def _resync(self, first: int = 0, keep_carrier: bool = False) -> None:
        """Take the links as they are now (at up, and because events of our
        own setup may still be queued: replaying them passes old states).
        first (the standby) goes first.  keep_carrier (adopting a master
        that carries traffic): the master's carrier follows only the final
        decision, not the steps on the way (no slave yet, then one)."""
        self.keep_carrier = keep_carrier
        try:
            dump = links.dump(self.ipr)
            # A slave the dump no longer has was deleted while its event was
            # lost (a netlink overrun): release it first, so that the link
            # that replaced it (a re-plugged VF, a new index) finds its role
            # free instead of being ignored as a second one.
            present = {link.index for link in dump}
            gone = [link for link in self.group.slaves.values() if link.index not in present]
            for link in gone:
                log.info("%s (index %d) is gone: released", link.name, link.index)
                self._execute(self.group.link_removed(link.index))
            if gone:
                # Links ignored while the role was taken (a new VF seen
                # before the old one's lost removal) are considered afresh.
                self.group._ignored.clear()
            for link in sorted(dump, key=lambda l: l.index != first):
                if link.index != self.master_index:
                    self._execute(self.group.link_changed(self._measured(link)))
        finally:
            self.keep_carrier = False
        if keep_carrier:
            self._execute(self.group.tick())

    def hand_over(self, conn) -> None:
        """netfo restart: give the master to the daemon on conn (handover.py)."""
        held = [(r, s) for r, s in self.slaves.held.items() if self.dp.fds(r)]
        state = {"queues": len(self.dp),
                 "slots": [{"role": str(r), "index": s.index, "name": s.name} for r, s in held]}
        # queue by queue, queue 0 first: a daemon before --queues reads
        # the first three (TAP, primary, standby) and gets a whole queue
        fds = [fd for q, tap_fd in enumerate(self.builder.tap_fds)
               for fd in [tap_fd] + [self.dp.fds(r)[q] for r, _ in held]]

        def release() -> None:
            self._stop_datapath()
            self.server.sock.close()        # the name is the new daemon's now
            if self.exporter is not None:   # and so is the metrics port
                self.exporter.close()
            self.handed_over = True
            self.stop.set()
            log.info("%s: handed over to the new daemon", self.ifname)
        if not handover.give(conn, state, fds, release):
            log.warning("%s: the new daemon gave up the handover: serving on", self.ifname)

    # ------------------------------------------------------ decisions

    def _execute(self, d: Decision) -> None:
        """Carry out a decision: its actions first (what an action leads to,
        a refusal or the enslaved link's fresh state, is a further decision
        of the group), then the loop's flags, the carrier, announcements."""
        final, pending = d, list(d.actions)
        while pending:
            follow = self._act(pending.pop(0))
            if follow is not None:
                pending += follow.actions
                final = final.then(follow)
        self._push(final)

    def _act(self, a) -> Optional[Decision]:
        if isinstance(a, Enslave):
            try:
                fresh = self.slaves.enslave(a.role, a.link, self.inherited.pop(a.link.index, None))
            except (NetfoError, OSError) as e:
                log.error("%s not enslaved as %s: %s", a.link.name, a.role, e)
                self.slaves.refused[a.role] = str(e)
                return self.group.reject(a.role)
            return self.group.link_changed(self._measured(fresh)) if fresh is not None else None
        if isinstance(a, Release):
            self.slaves.release(a.role, a.gone)
        elif isinstance(a, Ignore):
            log.warning("%s has %s's MAC but is left alone: %s", a.link.name, self.ifname, a.reason)
        return None

    def _push(self, d: Decision) -> None:
        for role in Role:
            self.dp.set_ready(role, role in d.ready and role in self.slaves)
        self.dp.set_preferred(d.active if d.active is not None else Role.PRIMARY)
        takeover = self.group.takeover()
        self.dp.set_takeover(-1 if takeover is None else takeover)
        for e in d.events:
            self._log(e)
        if d.carrier != self.carrier and not self.keep_carrier:
            self.dp.set_carrier(d.carrier)
            self.carrier = d.carrier
            log.info("%s: carrier %s", self.ifname, "on" if d.carrier else "off")
        if d.announce and self.config.notify_count:
            t = time.monotonic()
            self.notify_due = [t + i * self.config.notify_interval_s
                               for i in range(self.config.notify_count)]
        self._follow_loop(counters=False)

    def _log(self, e: dict) -> None:
        """The log lines of the group's events (the lab tooling reads some)."""
        if e["kind"] == "switch":
            log.info("transmit via %s (%s, %s)", e["to"], e["reason"], e["slave"])
            self.service.switched()
            if e["from"] is None and e["to"] is not None:     # an outage ended
                self._guarded(self._forget_failed_neighbours)
        elif e["kind"] == "path" and not e["up"]:
            log.warning("%s: no answer to probes for %.0f ms: path down", e["slave"],
                        self.prober.window * 1000)
        elif e["kind"] == "path":
            log.info("%s: probes answered again: path up", e["slave"])

    def _forget_failed_neighbours(self) -> None:
        if not self.master_index:
            return
        n = master.forget_failed_neighbours(self.ipr, self.master_index)
        if n:
            log.info("%s: %d neighbour entries failed during the outage: resolving them afresh",
                     self.ifname, n)

    def _follow_loop(self, counters: bool) -> None:
        """The one place that learns what the loop did by itself: the slot
        it transmits through now and, when its event fd fired (or on the
        tick, for a loop without one), whether a send error made it switch.
        Both go to the group as one input."""
        reason = None
        if counters:
            failovers = self.dp.stats()["master"]["send_failovers"]
            if failovers != self.send_failovers:
                self.send_failovers = failovers
                reason = "send-error"
        slot = self.dp.active()
        to = Role(slot) if slot >= 0 else None
        if reason is not None or to != self.group.sending:
            self._execute(self.group.loop_switched(to, reason))

    def _loop_sending(self) -> tuple:
        slot = self.dp.active()
        return (Role(slot) if slot >= 0 else None), self.dp.switched_at()

    def _measured(self, link):
        """link with its speed, which only --reselect better weighs: read
        (sysfs: the driver's ethtool link settings, which can be slow on
        real NICs) only then, and only for a link that can transmit."""
        if self.config.reselect != "better" or not link.ready:
            return link
        return dataclasses.replace(link, speed=links.speed_duplex(link.name, link.index)[0] or 0)

    def force(self, role: Optional[Role]) -> Decision:
        """netfo set IF active ...: the server's one way to change anything."""
        d = self.group.force(role)
        self._execute(d)
        return d

    # ------------------------------------------------------------ inputs

    def _on_links(self, indexes: list) -> None:
        """Links some events were about, each read once as it is now: events
        can be stale (those of our own setup are still queued) and come in
        bursts (a carrier change is several messages), so what counts is
        the state now."""
        for index in dict.fromkeys(indexes):
            if self.stop.is_set():
                return
            self._guarded(self._on_link, index)

    def _on_link(self, index: int) -> None:
        role = self.group.role_of(index)
        if role is not None and role in self.slaves:
            self.dp.release(role)       # the loop's hold, if any, ends with this read
        link = links.get(index=index)
        if link is None:
            return self._on_gone(index)
        if link.index == self.master_index:
            return self.slaves.police(link)
        role = self.group.role_of(link.index)
        if role is not None:
            self.slaves.renamed(role, link.name)
        self._execute(self.group.link_changed(self._measured(link)))

    def _on_gone(self, index: int) -> None:
        if index == self.master_index:
            log.error("%s was deleted behind netfo's back: stopping", self.ifname)
            self.master_index = 0
            self.stop.set()
            return
        self._execute(self.group.link_removed(index))

    def _poll_carrier(self) -> None:
        """Tell the group the slaves' live carrier, as the kernel's netlink
        notification of a carrier loss can lag by up to a second (B-21).
        The loop reads it every miimon ms itself (no wake-up of ours) and
        wakes us when it held or took a slave on it (a recovery, or the
        primary's takeover): read before the group's next decision, which
        would otherwise undo the loop's."""
        for role, state in list(self.slaves.held.items()):
            link = self.group.slaves.get(role)
            if link is None or links.live_ready(state.index) in (None, link.ready):
                continue
            fresh = links.get(index=state.index)
            if fresh is not None:
                self._execute(self.group.link_changed(self._measured(fresh)))

    def _heard(self, role: Role, sock) -> None:
        now = time.monotonic()
        while True:
            try:
                frame = sock.recv(2048)
            except BlockingIOError:
                return
            self.prober.heard(role, frame, self.own_ips, now)

    def _probe(self) -> None:
        """One probe round; the prober's verdicts go to the group."""
        state = master.master_state(self.ifname, self.ipr)
        self.own_ips = set(state["ip4"]) | set(state["ip6"])
        roles = list(self.slaves.held)
        slot = self.dp.active()
        probes = self.prober.frames(self.mac, state)
        for role in self.prober.sources(Role(slot) if slot >= 0 else None, roles):
            self.slaves.send(role, probes)
        for v in self.prober.judge(roles, self.group.active(), time.monotonic()):
            self._execute(self.group.path_up(v.role) if v.up else
                          self.group.path_down(v.role, "probe"))

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
        def state_of(name: str) -> dict:
            return master.master_state(name, self.ipr)
        out = frames.announcements(self.mac, state_of(self.ifname), state_of=state_of)
        self.slaves.send(slot, out)
        log.info("announced %s on %s (%d frames)", self.ifname, Role(slot), len(out))

    def _tick(self) -> None:
        """What netlink does not announce: delays running out, the master's
        multicast list and promiscuity, and (for a loop without an event
        fd) the switches the loop made itself."""
        self._execute(self.group.tick())
        if self.saved_qlen is not None and time.monotonic() > self.settled_at + QLEN_HOLD:
            # the backlog has drained by now: shrinking a ring drops what it holds
            links.set_link(self.ipr, self.master_index, "restore the TAP's queue",
                           txqlen=self.saved_qlen)
            self.saved_qlen = None
        if not self.loop_fds:
            self._follow_loop(counters=True)
        self.slaves.follow_lists(self.master_index)
        if time.monotonic() >= self.next_silence_check:
            # in case an announcement was lost, and for the sysctls (never announced)
            self.next_silence_check = time.monotonic() + SILENCE_CHECK
            self.slaves.keep_silent()

    def _nft_changed(self) -> None:
        cause = self.nft_watch.drain()
        if cause is not None:
            self.nft_cause = cause

    def _loop_event(self, fd: int) -> None:
        try:
            os.read(fd, 8)                      # the eventfd's count: reset it
        except BlockingIOError:
            pass
        self._poll_carrier()
        self._follow_loop(counters=True)

    # ------------------------------------------------------------ serve

    def _watch(self) -> None:
        """Start following link events before any state is read (B-4 note).

        A thread of its own blocks on the netlink socket and queues each
        event for the main loop, which it wakes through a pipe. (The
        datapath reads link events too, and holds a failed slave down at
        once: see _fastpath.watch_links.)
        """
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.wake_r, self.wake_w = os.pipe()
        sock = links.link_socket()

        def reader() -> None:
            with sock:
                while not self.stop.is_set():
                    try:
                        data = sock.recv(1 << 16)
                    except OSError:             # ENOBUFS: the kernel dropped events
                        self.inbox.put(None)
                        self._wake()
                        continue
                    for index in links.link_events(data):
                        self.inbox.put(index)
                    self._wake()

        threading.Thread(target=reader, name="netfo-netlink", daemon=True).start()

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"!")
        except (OSError, AttributeError):
            pass

    def _netlink(self) -> None:
        os.read(self.wake_r, 4096)
        indexes = []
        while not self.inbox.empty():
            indexes.append(self.inbox.get())
        if None in indexes:
            log.warning("netlink events were lost (socket overrun): re-reading every link")
            for role in list(self.slaves.held):
                self.dp.release(role)
            self._guarded(self._resync)
        self._on_links([i for i in indexes if i is not None])

    def serve(self, ready: Optional[Callable[[], None]] = None) -> None:
        """Follow netlink, the loop and the control socket until stopped."""
        sel = self.sel = self.slaves.selector = selectors.DefaultSelector()
        sel.register(self.wake_r, selectors.EVENT_READ, "netlink")
        self.server.attach(sel)         # the listener and each client, data: the server
        if self.exporter is not None:
            self.exporter.attach(sel)   # the same for the metrics endpoint
        for role, sock in self.slaves.observers.items():
            sel.register(sock, selectors.EVENT_READ, ("probe", role))
        # a firewall reload that removes the slaves' silencing is undone
        # as soon as nftables announces it (Slaves.keep_silent)
        self.nft_watch = nftwatch.Watch(self.slaves.silencer.table)
        sel.register(self.nft_watch, selectors.EVENT_READ, "nft")
        self.loop_fds = self.dp.event_fds()
        for fd in self.loop_fds:
            sel.register(fd, selectors.EVENT_READ, "loop")
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: (self.stop.set(), self._wake()))
        if ready:
            ready()
        self.beat = time.monotonic()
        self.service.ready()
        next_tick = time.monotonic()
        while not self.stop.is_set():
            self.beat = time.monotonic()
            deadlines = [d for d in (self.group.next_deadline(), self.server.next_deadline(),
                                     self.exporter and self.exporter.next_deadline(),
                                     self.notify_due[0] if self.notify_due else None) if d]
            if self.prober.enabled:
                deadlines.append(self.next_probe)
            wait = min([TICK] +
                       [max(0.0, d - time.monotonic()) for d in deadlines])
            for key, mask in sel.select(wait):
                if key.data is self.server:
                    self.server.ready(key, mask)     # never blocks, never raises
                elif key.data is self.exporter and self.exporter is not None:
                    self.exporter.ready(key, mask)   # the same
                elif isinstance(key.data, tuple):
                    self._guarded(self._heard, key.data[1], key.fileobj)
                elif key.data == "netlink":
                    self._netlink()
                elif key.data == "loop":
                    self._guarded(self._loop_event, key.fd)
                elif key.data == "nft":
                    self._guarded(self._nft_changed)
            self.server.expire()
            if self.exporter is not None:
                self.exporter.expire()
            if self.stop.is_set() or not self.master_index:
                continue
            if self.nft_cause is not None:
                cause, self.nft_cause = self.nft_cause, None
                self._guarded(self.slaves.keep_silent, cause)
            if self.notify_due:
                self._guarded(self._announce)
            if self.prober.enabled and time.monotonic() >= self.next_probe:
                self.next_probe = time.monotonic() + self.prober.interval
                self._guarded(self._probe)
            deadline = self.group.next_deadline()
            if deadline is not None and time.monotonic() >= deadline:
                self._guarded(lambda: self._execute(self.group.tick()))
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK
                self._guarded(self._tick)
        self.service.stopping()
        sel.close()
        self.nft_watch.close()
        self.slaves.silencer.close()
        self.sel = self.slaves.selector = None

    @staticmethod
    def _guarded(fn, *args) -> None:
        """One failed event must not tear down a working master."""
        try:
            fn(*args)
        except NetfoError as e:
            log.error("%s", e)
        except Exception:
            log.exception("unexpected error (netfo keeps running)")

    # ------------------------------------------------------------ down

    def down(self) -> None:
        """Stop forwarding and put everything back as before up() (after a
        handover: nothing, the master is the new daemon's)."""
        if self.handed_over:
            self._end_subscribers("handover")
            return
        try:
            self.service.forget_fds()
            self.builder.unwind()
            self.builder.restored()         # NetfoError: what is left to do (journal kept)
        finally:
            self._end_subscribers("down")   # after the releases: they saw those too

    def _end_subscribers(self, why: str) -> None:
        """`netfo events --follow` readers: their last line says why the
        stream ends (a handover: the next daemon goes on with it)."""
        if self.server is not None:
            self.server.end(why)

    def _stop_datapath(self) -> None:
        self.dp.stop()
        for t in self.loops:
            t.join(5)
