"""The TAP master: TUNSETIFF and friends (no library covers these ioctls)."""
from __future__ import annotations

import fcntl
import os
import struct
from typing import Optional

TUN_PATH = "/dev/net/tun"

TUNSETIFF = 0x400454CA
TUNGETIFF = 0x800454D2
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUNSETCARRIER = 0x400454E2

IFF_TAP = 0x0002
IFF_NO_CARRIER = 0x0040     # start carrier-off (>= 6.0): no slave yet
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_MULTI_QUEUE = 0x0100
MAX_QUEUES = 16             # --queues: well under the kernel's 256, and the fds of a handover

TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN = 0x01, 0x02, 0x04, 0x08
TUN_F_USO4, TUN_F_USO6 = 0x20, 0x40

VNET_HDR_LEN = 10           # struct virtio_net_hdr, as PACKET_VNET_HDR uses
BUFSZ = 67584               # one read: vnet header + 64 KB GSO frame + Ethernet/VLAN headers


def tun_flags(name: str) -> Optional[int]:
    """The IFF_* flags of the existing TAP name (sysfs), or None: no such TAP."""
    try:
        with open(f"/sys/class/net/{name}/tun_flags") as f:
            return int(f.read(), 16)
    except (OSError, ValueError):
        return None


def multi_queue(name: str) -> bool:
    """Whether the TAP name exists and takes more than one queue.  TUNSETIFF
    refuses to attach with the other setting, so a TAP an older netfo made
    single-queue stays so until `netfo down`."""
    return bool((tun_flags(name) or 0) & IFF_MULTI_QUEUE)


def open_tap(name: str) -> int:
    """Create (or attach one more queue to) the persistent TAP name; returns
    the fd of that queue.

    A new TAP is multi-queue even when one queue serves it: a daemon
    restarted with --queues N can then attach N (a TAP with one queue
    attached costs nothing more: the kernel picks no queue for it).  An
    existing TAP is attached with the setting it was made with.
    The fd passes virtio-net headers so GSO/partial-checksum frames cross
    netfo whole (see userspace-io-and-peers.md 1.7).
    """
    flags = tun_flags(name)
    mq = IFF_MULTI_QUEUE if flags is None or flags & IFF_MULTI_QUEUE else 0
    fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        ifr = struct.pack("16sH", name.encode(),
                          IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_NO_CARRIER | mq)
        fcntl.ioctl(fd, TUNSETIFF, ifr.ljust(40, b"\0"))
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
        base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, base | TUN_F_USO4 | TUN_F_USO6)
        except OSError:     # USO needs >= 6.2
            fcntl.ioctl(fd, TUNSETOFFLOAD, base)
    except BaseException:
        os.close(fd)
        raise
    return fd


def name_of(fd: int) -> str:
    """The name of the TAP fd is attached to (OSError: not an attached TAP
    fd).  An fd handed over by systemd or the previous daemon is checked
    with it before it is trusted."""
    ifr = fcntl.ioctl(fd, TUNGETIFF, bytes(40))
    return ifr[:16].split(b"\0", 1)[0].decode()


def attached_to(fd: int, name: str) -> bool:
    try:
        return name_of(fd) == name
    except OSError:
        return False


def set_persist(fd: int, on: bool) -> None:
    """A persistent TAP outlives its fd: the master survives a daemon restart."""
    fcntl.ioctl(fd, TUNSETPERSIST, int(on))


def set_carrier(fd: int, on: bool) -> None:
    fcntl.ioctl(fd, TUNSETCARRIER, struct.pack("i", int(on)))
