"""The daemon as a systemd service: readiness, status, the fd store and
the watchdog (sd_notify, see sdnotify.py).  Everything is a no-op when
systemd did not start us (no NOTIFY_SOCKET / WATCHDOG_USEC).

The daemon calls, and only these (netfo/daemon.py):
    ready()          once the master forwards (serve() calls ready):
                     READY=1 + STATUS=, the TAP fd into the fd store
                     (FDNAME=tap-IF), and the watchdog thread starts
    switched()       on every switch of the transmitting slave: STATUS=
    stopping()       the control loop is leaving: STOPPING=1
    forget_fds()     `down` restores the machine: FDSTOREREMOVE the TAP fd
and it sets `daemon.beat` (monotonic) on every turn of its control loop.

The watchdog sends WATCHDOG=1 every WATCHDOG_USEC/2 only while
  * the control loop turns (its beat is fresh),
  * every forwarding loop thread lives and answers Datapath.ping() in time
    (a loop that is wedged, not just dead, stops the pings too),
so systemd restarts a daemon that hangs, and the restart adopts the master.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Optional

from . import sdnotify

log = logging.getLogger("netfo")

FDNAME_PREFIX = "tap-"
STALE_MIN = 1.0         # s: the control loop turns every TICK (0.2 s) or sooner


def fdname(ifname: str) -> str:
    """The fd store name of a master's TAP fd (the adoption path reads it)."""
    return FDNAME_PREFIX + ifname


def status_line(ifname: str, role, slave: Optional[str]) -> str:
    """STATUS= text: which slave transmits."""
    if role is None:
        return f"{ifname}: no slave can transmit (frames dropped)"
    return f"{ifname}: transmitting via {role} {slave}" if slave else f"{ifname}: transmitting via {role}"


class Service:
    def __init__(self, daemon):
        self.d = daemon
        self.interval = sdnotify.watchdog_interval()
        self.quit = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.pings = 0                  # WATCHDOG=1 sent (for tests and status)
        self.withheld = False           # the last check failed (logged once)

    # ------------------------------------------------------------ hooks

    def status_text(self) -> str:
        d = self.d
        role = d.group.active() if d.group is not None else None
        try:                    # a status line must never cost the daemon anything
            slave = d.slaves[role].name if role is not None and role in d.slaves else None
        except Exception:
            slave = None
        return status_line(d.ifname, role, slave)

    def ready(self) -> None:
        if self.d.takeover:             # netfo restart: this process is the service now
            sdnotify.mainpid(os.getpid())
        sdnotify.ready(self.status_text())
        if self.d.builder.tap_fd >= 0:
            sdnotify.fdstore([self.d.builder.tap_fd], fdname(self.d.ifname))
        if self.interval and self.thread is None:
            self.thread = threading.Thread(target=self._watchdog, name="netfo-watchdog",
                                           daemon=True)
            self.thread.start()

    def switched(self) -> None:
        sdnotify.status(self.status_text())

    def stopping(self) -> None:
        if not self.quit.is_set():              # once: the loop's end, or down first
            self.quit.set()
            if not self.d.handed_over:          # else the new daemon is the service
                sdnotify.stopping(f"{self.d.ifname}: stopping")

    def forget_fds(self) -> None:
        self.stopping()
        sdnotify.fdstore_remove(fdname(self.d.ifname))

    # ------------------------------------------------------------ watchdog

    def alive(self, ping_timeout: float) -> Optional[str]:
        """None if the daemon is healthy, else what is wrong."""
        d = self.d
        if d.stop.is_set():
            return "stopping"
        stale = time.monotonic() - getattr(d, "beat", 0.0)
        if stale > max(self.interval or 0.0, STALE_MIN):
            return f"the control loop has not turned for {stale:.1f} s"
        if d.loop_error is not None or not d.loops or not all(t.is_alive() for t in d.loops):
            return "a forwarding loop is not running"
        if d.dp is None or not d.dp.ping(ping_timeout):
            return f"a forwarding loop did not answer within {ping_timeout * 1000:.0f} ms"
        return None

    def _watchdog(self) -> None:
        interval = self.interval
        ping_timeout = min(max(interval / 2, 0.05), 2.0)
        next_at = time.monotonic()
        while not self.quit.is_set():
            wrong = self.alive(ping_timeout)
            if wrong is None:
                if sdnotify.watchdog():
                    self.pings += 1
                if self.withheld:
                    log.info("%s: watchdog: healthy again", self.d.ifname)
                self.withheld = False
            elif not self.withheld and not self.quit.is_set():
                log.error("%s: watchdog: %s: no WATCHDOG=1 to systemd", self.d.ifname, wrong)
                self.withheld = True
            next_at = max(next_at + interval, time.monotonic())
            self.quit.wait(max(0.0, next_at - time.monotonic()))
