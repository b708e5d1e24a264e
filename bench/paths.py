"""The data paths compared, each set up on a fresh lab's guest.

Every path gives the guest its IP (192.168.12.53) on an interface whose
traffic reaches the peer through the VF ens11; they differ only in what
joins the two.  Each is a context manager yielding the pid of the process
that forwards (for its CPU time) or None where the kernel does it.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Callable, ContextManager, Iterator

from netfo.lab import GUEST_IP4, MAC, VF_IF, VIRTIO_IF, Lab, harness

from . import ovs
from .measure import REPO, BenchError, stop as _stop

MASTER, STANDBY = VIRTIO_IF, VIRTIO_IF + "nsby"     # netfo's names
Path = Callable[[Lab], ContextManager["int | None"]]


def _ip(lab: Lab, *args: str) -> None:
    lab.run("guest", "ip", *args)


def _standby(lab: Lab) -> None:
    """What `netfo up` does first: the virtio NIC becomes ens10nsby, without the IPs."""
    _ip(lab, "link", "set", VIRTIO_IF, "down")
    _ip(lab, "link", "set", VIRTIO_IF, "name", STANDBY)
    _ip(lab, "addr", "flush", "dev", STANDBY)
    _ip(lab, "link", "set", STANDBY, "up")


def _master(lab: Lab, qdisc: bool = True) -> None:
    """The master (made by the caller) gets the MAC, carrier-friendly qdisc and the IP."""
    _ip(lab, "link", "set", MASTER, "address", MAC, "mtu", "1500")
    if qdisc:   # as netfo does: a TAP's default qdisc only adds a queue
        lab.run("guest", "tc", "qdisc", "replace", "dev", MASTER, "root", "noqueue")
    _ip(lab, "link", "set", MASTER, "up")
    _ip(lab, "addr", "add", f"{GUEST_IP4}/24", "dev", MASTER)


def _silence(lab: Lab, *devs: str) -> None:
    """As netfo does: the slaves' own stacks drop all they get (AF_PACKET sees it first)."""
    chains = "".join(f'  chain in_{d} {{ type filter hook ingress device "{d}" priority -500; '
                     f'policy drop; }}\n' for d in devs)
    p = subprocess.run(["ip", "netns", "exec", lab.guest, "nft", "-f", "-"],
                       input=f"table netdev bench {{\n{chains}}}\n", text=True, capture_output=True)
    if p.returncode:
        raise BenchError(f"nft: {p.stderr.strip()}")
    for d in devs:
        lab.run("guest", "sysctl", "-q", "-w", f"net.ipv6.conf.{d}.disable_ipv6=1")


def _start(lab: Lab, *argv: str) -> subprocess.Popen:
    """A Python helper in the guest; returns once it printed "ready"."""
    proc = lab.popen("guest", sys.executable, *argv, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True)
    if proc.stdout.readline().strip() != "ready":
        _stop(proc)
        raise BenchError(f"{' '.join(argv)} did not start: {proc.stderr.read().strip()[-300:]}")
    return proc


@contextlib.contextmanager
def direct(lab: Lab) -> Iterator[None]:
    """The IP on the VF itself, no failover: the ceiling."""
    _ip(lab, "addr", "flush", "dev", VIRTIO_IF)
    _ip(lab, "link", "set", VIRTIO_IF, "down")
    _ip(lab, "addr", "add", f"{GUEST_IP4}/24", "dev", VF_IF)
    yield None


@contextlib.contextmanager
def kernel(lab: Lab) -> Iterator[None]:
    """A TAP master joined to the VF by tc mirred both ways: the in-kernel datapath.

    What the guest sends on the master is redirected, at the master's egress
    hook, to the VF's transmit; what the VF receives is redirected, at its
    ingress hook, into the master's receive path (mirred `ingress`), so the
    guest stack sees it arrive on the master.  No failover logic.
    """
    _standby(lab)
    holder = _start(lab, "-m", "bench.taphold", MASTER)
    try:
        _master(lab)
        for dev, hook, action, to in ((MASTER, "egress", "egress", VF_IF),
                                      (VF_IF, "ingress", "ingress", MASTER)):
            lab.run("guest", "tc", "qdisc", "add", "dev", dev, "clsact")
            # u32 "match all": matchall/flower are not built into this kernel.
            lab.run("guest", "tc", "filter", "add", "dev", dev, hook, "protocol", "all", "u32",
                    "match", "u32", "0", "0", "action", "mirred", action, "redirect", "dev", to)
        yield None
    finally:
        _stop(holder)


@contextlib.contextmanager
def python(lab: Lab) -> Iterator[int]:
    """The pure-Python reference forwarder (bench/reference_forwarder.py)."""
    _standby(lab)
    fwd = _start(lab, "-m", "bench.reference_forwarder", "--tap", MASTER, "--slave", VF_IF)
    try:
        _master(lab)
        _silence(lab, VF_IF, STANDBY)
        yield fwd.pid
    finally:
        _stop(fwd)


@contextlib.contextmanager
def netfo(lab: Lab, *args: str) -> Iterator[int]:
    """`netfo up ens10 --foreground` in the guest (netfo.lab.harness); the VF is the primary."""
    n = Harness(lab, *args, ifname=MASTER, logfile=f"/tmp/netfo-bench-{lab.prefix}.log",
                keep_log=False)
    netns = os.stat(f"/var/run/netns/{lab.guest}").st_ino
    try:
        n.start(ready=lambda st: st.get("active") == "primary", timeout=20,
                what="ready (transmitting via the primary)")
        yield n.pid
    finally:
        n.stop()        # `netfo down` restores the guest and ends the daemon
        for suffix in ("log", "journal"):   # the daemon's files for this namespace
            with contextlib.suppress(OSError):
                os.unlink(f"/run/netfo/net{netns}-{MASTER}.{suffix}")


class Harness(harness.Netfo):
    error = BenchError


def _ovs(tso: bool) -> Path:
    @contextlib.contextmanager
    def path(lab: Lab) -> Iterator[int]:
        _standby(lab)
        _ip(lab, "link", "set", VF_IF, "up")
        with ovs.OVS(lab, MASTER, STANDBY, tso) as sw:
            _master(lab, qdisc=False)       # OVS's own TAP, as OVS makes it
            _silence(lab, VF_IF, STANDBY)
            yield sw.pid
    path.__doc__ = (f"Open vSwitch netdev datapath, active-backup bond, "
                    f"userspace TSO {'on' if tso else 'off'}.")
    return path


PATHS: dict[str, Path] = {
    "direct": direct, "kernel": kernel, "netfo": netfo,
    "netfo-2t": lambda lab: netfo(lab, "--threads", "2"),
    "netfo-bp": lambda lab: netfo(lab, "--busy-poll", "50"),
    "netfo-nogro": lambda lab: netfo(lab, "--gro", "off"),
    "netfo-uring": lambda lab: netfo(lab, "--tap-io", "uring"),
    "netfo-uwrite": lambda lab: netfo(lab, "--tap-io", "uring-write"),
    "netfo-2q": lambda lab: netfo(lab, "--queues", "2"),
    "ovs-tso": _ovs(tso=True), "ovs": _ovs(tso=False), "python": python,
}
FORWARDER = {"direct": None, "kernel": None, "netfo": "netfo daemon", "netfo-2t": "netfo daemon",
             "netfo-bp": "netfo daemon", "netfo-nogro": "netfo daemon",
             "netfo-uring": "netfo daemon", "netfo-uwrite": "netfo daemon",
             "netfo-2q": "netfo daemon",
             "ovs-tso": "ovs-vswitchd", "ovs": "ovs-vswitchd", "python": "reference forwarder"}
