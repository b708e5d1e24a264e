"""Path probing: is a slave's path alive although its carrier is up?

A VF keeps carrier while the host's PF uplink or vSwitch black-holes it.
Like bonding's arp_interval/arp_validate and teamd's arp_ping, netfo sends
ARP requests (and IPv6 neighbour solicitations) for configured targets out
of the slave that transmits.  A slave's path counts as alive while it
receives ARP/ND frames from a target or from the master's own addresses:
the active slave gets the targets' replies, the other one the probes the
switch floods back to it (bonding's trick), so probing never needs to send
from the backup and never moves the switch's idea of where the MAC is.
"""
from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
from typing import Optional

from .notify import _csum, _ether, _ip6, _mac
from .packet import ETH_P_ALL, PACKET_IGNORE_OUTGOING, SOL_PACKET

SO_ATTACH_FILTER = 26
ETH_P_ARP, ETH_P_IPV6 = 0x0806, 0x86DD
ND_NS, ND_NA = 135, 136

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


def arp_request(mac: str, src4: Optional[str], target: str) -> bytes:
    hw = _mac(mac)
    sender = ipaddress.IPv4Address(src4 or "0.0.0.0").packed
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + sender + bytes(6) + \
        ipaddress.IPv4Address(target).packed
    return _ether(b"\xff" * 6, hw, ETH_P_ARP, None) + arp


def neighbour_solicitation(mac: str, src6: str, target: str) -> bytes:
    hw = _mac(mac)
    tgt = ipaddress.IPv6Address(target).packed
    dst = ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13] + tgt[13:]
    src = ipaddress.IPv6Address(src6).packed
    msg = struct.pack("!BBHI", ND_NS, 0, 0, 0) + tgt + struct.pack("!BB", 1, 1) + hw
    pseudo = src + dst + struct.pack("!I3xB", len(msg), 58)
    msg = msg[:2] + struct.pack("!H", _csum(pseudo + msg)) + msg[4:]
    return _ether(b"\x33\x33" + dst[12:], hw, ETH_P_IPV6, None) + _ip6(src, dst, 255, 58, msg)


def sender(frame: bytes) -> Optional[str]:
    """The IP address that sent an ARP or ND frame (None for other frames)."""
    if len(frame) >= 42 and frame[12:14] == b"\x08\x06":
        return str(ipaddress.IPv4Address(frame[28:32]))
    if len(frame) >= 78 and frame[12:14] == b"\x86\xdd" and frame[20] == 58 \
            and frame[54] in (ND_NS, ND_NA):
        if frame[54] == ND_NA:        # the answer names the target it is for
            return str(ipaddress.IPv6Address(frame[62:78]))
        return str(ipaddress.IPv6Address(frame[22:38]))
    return None


class Prober:
    """Which slaves' paths are alive, from what their observers receive."""

    def __init__(self, targets4: list, targets6: list, interval: float, missed: int):
        self.targets4, self.targets6 = targets4, targets6
        self.interval, self.missed = interval, missed
        self.last_heard: dict = {}          # role -> monotonic time

    @property
    def enabled(self) -> bool:
        return bool(self.targets4 or self.targets6)

    def frames(self, mac: str, state: dict) -> list:
        """One round of probes, sent out of the transmitting slave."""
        src4 = state["ip4"][0] if state["ip4"] else None
        src6 = next((a for a in state["ip6"] if not ipaddress.IPv6Address(a).is_link_local),
                    state.get("link_local6"))
        out = [arp_request(mac, src4, t) for t in self.targets4]
        if src6:
            out += [neighbour_solicitation(mac, src6, t) for t in self.targets6]
        return out

    def heard(self, role, frame: bytes, own: set, now: float) -> None:
        ip = sender(frame)
        if ip is not None and (ip in self.targets4 or ip in self.targets6 or ip in own):
            self.last_heard[role] = now

    def alive(self, role, now: float) -> bool:
        last = self.last_heard.setdefault(role, now)     # a new slave gets a grace period
        return now - last <= self.interval * self.missed
