"""AF_PACKET sockets bound to the slaves (PACKET_* options by hand)."""
from __future__ import annotations

import ctypes
import socket
import struct

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_AUXDATA = 8
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_MULTICAST = 0
PACKET_MR_PROMISC = 1
PACKET_MR_ALLMULTI = 2
ETH_P_ALL = 0x0003
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33      # not in Python's socket module
RCVBUF = 4 << 20


def open_slave(ifname: str) -> int:
    """A raw socket on ifname; returns its fd, whose owner must close it.

    ETH_P_ALL sockets see received frames before tc/nft ingress, which is
    what lets netfo drop them for the slave's own stack yet still get them.
    """
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
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

SO_ATTACH_FILTER = 26
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


def observer(ifname: str) -> socket.socket:
    """A socket that sees the ARP/ND frames ifname receives (not its own)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        prog = b"".join(struct.pack("HBBI", *i) for i in _FILTER)
        buf = ctypes.create_string_buffer(prog)
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                     struct.pack("HL", len(_FILTER), ctypes.addressof(buf)))
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        s.setblocking(False)
        s.bind((ifname, ETH_P_ALL))
    except BaseException:
        s.close()
        raise
    return s
