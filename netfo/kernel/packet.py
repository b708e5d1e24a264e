"""AF_PACKET sockets bound to the slaves (PACKET_* options by hand)."""
from __future__ import annotations

import ctypes
import os
import socket
import struct

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_AUXDATA = 8
PACKET_VNET_HDR = 15
PACKET_FANOUT = 18
PACKET_IGNORE_OUTGOING = 23
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000
PACKET_MR_MULTICAST = 0
PACKET_MR_PROMISC = 1
PACKET_MR_ALLMULTI = 2
ETH_P_ALL = 0x0003
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33      # not in Python's socket module
RCVBUF = 4 << 20


def open_slave(ifname: str, muted: bool = False) -> int:
    """A raw socket on ifname; returns its fd, whose owner must close it.

    ETH_P_ALL sockets see received frames before tc/nft ingress, which is
    what lets netfo drop them for the slave's own stack yet still get them.
    muted: it takes no frame until unmute() (see open_slaves).
    """
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        if muted:
            _attach(s, _DROP_ALL)
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)          # stripped VLAN tags
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # never see our TX
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, RCVBUF)
        s.setblocking(False)
        s.bind((ifname, ETH_P_ALL))     # bind last: nothing queued before setup
    except BaseException:
        s.close()
        raise
    return s.detach()


def open_slaves(ifname: str, n: int) -> list:
    """n sockets on ifname (open_slave), one per datapath queue; with n > 1
    they share the slave's received frames in one fanout group (join_fanout)."""
    fds: list = []
    try:
        # Muted until all are in the group: a frame that came between one
        # socket's bind and its joining would reach two of them (twice to
        # the guest).
        for _ in range(n):
            fds.append(open_slave(ifname, muted=n > 1))
        if n > 1:
            join_fanout(fds)
            for fd in fds:
                unmute(fd)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def unmute(fd: int) -> None:
    s = socket.socket(fileno=fd)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    finally:
        s.detach()


def fanout_id(fd: int) -> int:
    """The fanout group fd is in (0: none)."""
    s = socket.socket(fileno=fd)
    try:
        return s.getsockopt(SOL_PACKET, PACKET_FANOUT) & 0xFFFF
    finally:
        s.detach()


def join_fanout(fds: list) -> None:
    """Put the sockets fds (bound to one link) in one PACKET_FANOUT_HASH
    group: each received frame goes to one of them, chosen by its flow's
    hash, so the frames of a TCP flow stay in one queue, in order.

    The group is the one the first fd is in already (sockets handed over
    by a daemon with fewer queues), else a new one whose id the kernel
    picks (FLAG_UNIQUEID: fanout ids are per network namespace, and two
    masters must never share one)."""
    gid = fanout_id(fds[0])
    for fd in fds:
        if fanout_id(fd):
            continue
        s = socket.socket(fileno=fd)
        try:
            s.setsockopt(SOL_PACKET, PACKET_FANOUT,
                         (gid or PACKET_FANOUT_FLAG_UNIQUEID << 16) | PACKET_FANOUT_HASH << 16)
        finally:
            s.detach()
        gid = gid or fanout_id(fd)


def membership(fd: int, ifindex: int, mr_type: int, mac: bytes = b"", add: bool = True) -> None:
    """PACKET_ADD/DROP_MEMBERSHIP on fd: the slave's mc list follows the master's.

    Memberships vanish with the socket, so a re-plugged VF starts clean.
    """
    mreq = struct.pack("iHH8s", ifindex, mr_type, len(mac), mac)
    opt = PACKET_ADD_MEMBERSHIP if add else PACKET_DROP_MEMBERSHIP
    s = socket.socket(fileno=fd)
    try:
        s.setsockopt(SOL_PACKET, opt, mreq)
    finally:
        s.detach()


# -- the prober's eyes --------------------------------------------------------

SO_ATTACH_FILTER, SO_DETACH_FILTER = 26, 27
ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD

# Classic BPF: keep ARP and ICMPv6 (no extension headers), drop the rest,
# so the daemon never sees the bulk traffic.
_FILTER = [
    (0x28, 0, 0, 12),          # ldh [12]            ethertype
    (0x15, 3, 0, ETH_P_ARP),   # jeq ARP -> accept
    (0x15, 0, 3, ETH_P_IPV6),  # jne IPv6 -> drop
    (0x30, 0, 0, 20),          # ldb [20]            IPv6 next header
    (0x15, 0, 1, 58),          # jne ICMPv6 -> drop
    (0x06, 0, 0, 0x40000),     # accept
    (0x06, 0, 0, 0),           # drop
]


_DROP_ALL = [(0x06, 0, 0, 0)]


def _attach(s: socket.socket, program: list) -> None:
    """SO_ATTACH_FILTER: the classic BPF program (list of (code, jt, jf, k))."""
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in program))
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                 struct.pack("HL", len(program), ctypes.addressof(buf)))


def observer(ifname: str) -> socket.socket:
    """A socket that sees the ARP/ND frames ifname receives (not its own)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        _attach(s, _FILTER)
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        s.setblocking(False)
        s.bind((ifname, ETH_P_ALL))
    except BaseException:
        s.close()
        raise
    return s
