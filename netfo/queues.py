"""--queues N: N datapaths over one multi-queue TAP, one queue pair each.

Each Datapath (the compiled loop) serves one TAP queue and one packet
socket per slave; the slave's sockets share its received frames in a
PACKET_FANOUT_HASH group (kernel/packet.py), and the TAP steers the guest's
frames of a flow to the queue that last delivered that flow's frames
(tun_automq_select_queue), so a TCP flow stays on one queue, in order,
both ways.  Queues gives the control plane the calls of one Datapath and
fans each out to every queue: the group's decisions (who transmits, who
is ready) hold for all of them at once.
"""
from __future__ import annotations

from typing import Callable, Optional

from .kernel import tap


def summed(dicts: list) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _fanned(name: str):
    """A method that calls Datapath.name with the same arguments on every queue."""
    def call(self, *args) -> None:
        self._each(name, *args)
    call.__name__ = name
    return call


class Queues:
    """The datapaths of one master, queue 0 first."""

    def __init__(self, dps: list):
        self.dps = dps
        self.preferred = 0

    def __len__(self) -> int:
        return len(self.dps)

    # -- the group's decisions and the settings, for every queue -------------

    def _each(self, name: str, *args) -> None:
        for dp in self.dps:
            getattr(dp, name)(*args)

    def set_preferred(self, slot: int) -> None:
        self.preferred = slot
        self._each("set_preferred", slot)

    # Datapath's own meaning, each queue told in turn.  set_miimon: every
    # queue reads the slaves' carrier itself, so that none sends on a slave
    # that lost it after the others noticed.
    set_carrier = _fanned("set_carrier")
    set_ready = _fanned("set_ready")
    set_takeover = _fanned("set_takeover")
    release = _fanned("release")
    set_promisc = _fanned("set_promisc")
    set_busy_poll = _fanned("set_busy_poll")
    set_gro = _fanned("set_gro")
    set_resend = _fanned("set_resend")
    set_miimon = _fanned("set_miimon")
    stop = _fanned("stop")

    def watch_links(self, socket_fd: Callable[[], int]) -> None:
        """Each queue reads link events from a netlink socket of its own
        (socket_fd() makes one) and holds a failed slave down by itself."""
        for dp in self.dps:
            dp.watch_links(socket_fd())

    def set_slave(self, slot: int, fds: list, ifindex: int = 0) -> None:
        """fds: the slave's sockets, one per queue, owned by the queues from
        now on (an empty list: no slave).  Every queue gets its socket even
        if one times out (Datapath.set_slave); then the first error is raised."""
        error = None
        for i, dp in enumerate(self.dps):
            try:
                dp.set_slave(slot, fds[i] if fds else -1, ifindex)
            except OSError as e:
                error = error or e
        if error is not None:
            raise error

    # -- what the loops say --------------------------------------------------

    def active(self) -> int:
        """The slot the loops transmit through.  A queue that left the
        preferred slot on its own (a send error, a link event it read
        first) speaks for all: the others follow as soon as the control
        plane has read the link."""
        slots = [dp.active() for dp in self.dps]
        moved = [s for s in slots if s != self.preferred]
        return moved[0] if moved else slots[0]

    def switched_at(self) -> float:
        """When the first queue now at active()'s slot moved there
        (monotonic s; 0.0: never): the loops' switch starts with it."""
        slot = self.active()
        times = [t for dp in self.dps if dp.active() == slot and (t := dp.switched_at())]
        return min(times, default=0.0)

    def fd(self, slot: int) -> int:
        """Queue 0's socket of slot (its memberships, the control plane's
        own frames), or -1."""
        return self.dps[0].fd(slot)

    def fds(self, slot: int) -> list:
        """Every queue's socket of slot, queue 0 first ([] if there is none)."""
        fds = [dp.fd(slot) for dp in self.dps]
        return fds if all(fd >= 0 for fd in fds) else []

    def event_fds(self) -> list:
        return [dp.event_fd() for dp in self.dps]

    def stats(self) -> dict:
        """The counters summed over the queues (as one Datapath's), and
        each queue's under "queues"."""
        each = [dp.stats() for dp in self.dps]
        return {"master": summed([s["master"] for s in each]),
                "slots": [summed([s["slots"][i] for s in each]) for i in range(2)],
                "queues": each}

    def ping(self, timeout: float = 1.0) -> bool:
        return all(dp.ping(timeout) for dp in self.dps)

    def tap_io(self) -> str:
        return self.dps[0].tap_io()

    def uring_error(self) -> int:
        return self.dps[0].uring_error()

    # -- the loops -----------------------------------------------------------

    def runs(self, threads: int) -> list:
        """(thread name, function) of every loop: one per queue, or two
        (one per direction) with threads=2."""
        out = []
        for i, dp in enumerate(self.dps):
            fns = [dp.run] if threads == 1 else [dp.run_tx, dp.run_rx]
            out += [(f"netfo-{fn.__name__}" + (f"-q{i}" if len(self.dps) > 1 else ""), fn)
                    for fn in fns]
        return out


def problem(queues: int, ifname: str) -> Optional[str]:
    """Why the master ifname cannot have `queues` queues, in one line (None:
    it can).  A TAP made before --queues is single-queue, and the kernel
    attaches no second queue to it."""
    flags = tap.tun_flags(ifname)
    if queues > 1 and flags is not None and not flags & tap.IFF_MULTI_QUEUE:
        return (f"--queues {queues}: the TAP was made single-queue (by a netfo before "
                f"--queues); use --queues 1, or `netfo down` then `netfo up` to make it anew")
    return None
