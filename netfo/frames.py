"""Frames that tell the network where the master is, after a failover.

net_failover announces nothing (B-23): a switch keeps forwarding the master's
MAC to the port it last learned it on, so inbound traffic falls into the old
path until the entry ages out or the guest happens to transmit. Bonding and
teamd send these frames after every change of active slave (num_grat_arp,
num_unsol_na, resend_igmp; section 3 of the behaviour reference), and so does
netfo, on the new slave.

The builders are pure and return whole Ethernet frames without a virtio-net
header (the caller prepends 10 zero bytes). Only the standard library is used,
so they import anywhere; netfo.kernel.master reads what to announce.
"""
from __future__ import annotations

import ipaddress
import struct
from typing import Callable, Optional

ETH_P_IP, ETH_P_ARP, ETH_P_IPV6, ETH_P_8021Q = 0x0800, 0x0806, 0x86DD, 0x8100
BROADCAST = b"\xff" * 6
MAC_ALL_NODES = bytes.fromhex("333300000001")        # ff02::1
MAC_MLDV2_ROUTERS = bytes.fromhex("333300000016")    # ff02::16
MAC_IGMPV3_ROUTERS = bytes.fromhex("01005e000016")   # 224.0.0.22
MODE_IS_EXCLUDE = 2
NA_OVERRIDE = 0x20000000
# A report must fit one 1500-byte frame: IPv4+RA (24) and IGMP (8) headers
# then 8-byte records; IPv6 (40), hop-by-hop (8), MLD (8) then 20-byte records.
IGMP_MAX_RECORDS = (1500 - 24 - 8) // 8       # 183
MLD_MAX_RECORDS = (1500 - 40 - 8 - 8) // 20   # 72


def _mac(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def _ether(dst: bytes, src: bytes, ethertype: int, vlan: Optional[int]) -> bytes:
    if vlan is None:
        return dst + src + struct.pack("!H", ethertype)
    if not 1 <= vlan <= 4094:
        raise ValueError(f"VLAN id out of range: {vlan}")
    # Priority 0, as a VLAN device without an egress QoS map sends.
    return dst + src + struct.pack("!HHH", ETH_P_8021Q, vlan, ethertype)


def ones_sum(data: bytes) -> int:
    """The 16-bit one's-complement sum of data (RFC 1071), not complemented:
    what a partial checksum is seeded with."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _csum(data: bytes) -> int:
    return ~ones_sum(data) & 0xFFFF


def _with_csum(msg: bytes, at: int, csum: int) -> bytes:
    return msg[:at] + struct.pack("!H", csum) + msg[at + 2:]


def _icmp6(src: bytes, dst: bytes, msg: bytes) -> bytes:
    pseudo = src + dst + struct.pack("!I3xB", len(msg), 58)
    return _with_csum(msg, 2, _csum(pseudo + msg))


def _ip6(src: bytes, dst: bytes, hlim: int, nh: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(payload), nh, hlim) + src + dst + payload


def _group4(g: str) -> bytes:
    a = ipaddress.IPv4Address(g)
    if not a.is_multicast:
        raise ValueError(f"not a multicast group: {g}")
    return a.packed


def _group6(g: str) -> bytes:
    a = ipaddress.IPv6Address(g)
    if not a.is_multicast:
        raise ValueError(f"not a multicast group: {g}")
    return a.packed


def garp(mac: str, ip4: str, vlan: Optional[int] = None) -> bytes:
    """Gratuitous ARP request for ip4, byte for byte as the kernel's
    inetdev_send_gratuitous_arp() (arp_send with no target hardware address:
    zeros). Broadcast, so every switch on the way learns the source MAC on the
    port it now arrives from, and every host holding ip4 in its ARP cache
    refreshes the entry to mac."""
    hw, ip = _mac(mac), ipaddress.IPv4Address(ip4).packed
    arp = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1) + hw + ip + bytes(6) + ip
    return _ether(BROADCAST, hw, ETH_P_ARP, vlan) + arp


def unsolicited_na(mac: str, ip6: str, src6: Optional[str] = None,
                   vlan: Optional[int] = None) -> bytes:
    """Unsolicited neighbour advertisement (RFC 4861 7.2.6) for ip6 to all
    nodes, as ndisc_send_unsol_na() sends for NETDEV_NOTIFY_PEERS: the switch
    relearns mac, and the Override flag makes neighbours replace a cached
    link-layer address instead of merely marking the entry stale. The kernel
    sources it from ip6 itself; src6 overrides that."""
    hw, target = _mac(mac), ipaddress.IPv6Address(ip6).packed
    src = ipaddress.IPv6Address(src6).packed if src6 else target
    dst = ipaddress.IPv6Address("ff02::1").packed
    msg = struct.pack("!BBHI", 136, 0, 0, NA_OVERRIDE) + target + bytes([2, 1]) + hw
    # Hop limit 255 is what lets receivers trust it came from the link.
    ip = _ip6(src, dst, 255, 58, _icmp6(src, dst, msg))
    return _ether(MAC_ALL_NODES, hw, ETH_P_IPV6, vlan) + ip


def igmpv3_report(mac: str, src4: str, groups: list[str],
                  vlan: Optional[int] = None) -> bytes:
    """IGMPv3 membership report with one MODE_IS_EXCLUDE record (no sources:
    "all senders") per group, as igmpv3_newpack() builds it. A snooping switch
    otherwise keeps the groups on the old port until its next query; this adds
    the new port now. src4 may be 0.0.0.0 (RFC 3376 4.2.13)."""
    if len(groups) > IGMP_MAX_RECORDS:
        raise ValueError(f"{len(groups)} groups do not fit one report (max {IGMP_MAX_RECORDS})")
    hw = _mac(mac)
    recs = b"".join(struct.pack("!BBH", MODE_IS_EXCLUDE, 0, 0) + _group4(g) for g in groups)
    igmp = struct.pack("!BBHHH", 0x22, 0, 0, 0, len(groups)) + recs
    igmp = _with_csum(igmp, 2, _csum(igmp))
    # TOS 0xc0, DF, id 0, TTL 1 and the Router Alert option, as the kernel:
    # routers and snooping switches must look inside even though it is not
    # addressed to them.
    hdr = struct.pack("!BBHHHBBH4s4s", 0x46, 0xC0, 24 + len(igmp), 0, 0x4000, 1, 2, 0,
                      ipaddress.IPv4Address(src4).packed, _group4("224.0.0.22"))
    hdr += b"\x94\x04\x00\x00"
    return _ether(MAC_IGMPV3_ROUTERS, hw, ETH_P_IP, vlan) + _with_csum(hdr, 10, _csum(hdr)) + igmp


def mldv2_report(mac: str, src6: str, groups: list[str],
                 vlan: Optional[int] = None) -> bytes:
    """MLDv2 report (RFC 3810) with one MODE_IS_EXCLUDE record per group, the
    IPv6 twin of igmpv3_report(). Without it an MLD-snooping switch would stop
    delivering the groups, including the solicited-node groups neighbour
    discovery needs, to the new port."""
    if len(groups) > MLD_MAX_RECORDS:
        raise ValueError(f"{len(groups)} groups do not fit one report (max {MLD_MAX_RECORDS})")
    hw, src = _mac(mac), ipaddress.IPv6Address(src6)
    if not (src.is_link_local or src.is_unspecified):
        # RFC 3810 5.2.13: routers drop reports from any other source.
        raise ValueError(f"MLD source must be link-local or ::, not {src6}")
    dst = _group6("ff02::16")
    recs = b"".join(struct.pack("!BBH", MODE_IS_EXCLUDE, 0, 0) + _group6(g) for g in groups)
    msg = _icmp6(src.packed, dst, struct.pack("!BBHHH", 143, 0, 0, 0, len(groups)) + recs)
    # Hop-by-hop header: Router Alert (MLD), then PadN to 8 bytes.
    hbh = bytes([58, 0, 5, 2, 0, 0, 1, 0])
    return _ether(MAC_MLDV2_ROUTERS, hw, ETH_P_IPV6, vlan) + _ip6(src.packed, dst, 1, 0, hbh + msg)


def _frames(mac: str, st: dict, vlan: Optional[int]) -> list[bytes]:
    out = [garp(mac, a, vlan) for a in st.get("ip4") or ()]
    out += [unsolicited_na(mac, a, vlan=vlan) for a in st.get("ip6") or ()]
    g4, g6 = st.get("groups4") or [], st.get("groups6") or []
    src4 = (st.get("ip4") or ["0.0.0.0"])[0]
    src6 = st.get("link_local6") or "::"
    # More groups than one frame holds: several reports, as the kernel does.
    out += [igmpv3_report(mac, src4, g4[i:i + IGMP_MAX_RECORDS], vlan)
            for i in range(0, len(g4), IGMP_MAX_RECORDS)]
    out += [mldv2_report(mac, src6, g6[i:i + MLD_MAX_RECORDS], vlan)
            for i in range(0, len(g6), MLD_MAX_RECORDS)]
    return out


def announcements(mac: str, state: dict,
                  state_of: Optional[Callable[[str], dict]] = None) -> list[bytes]:
    """Every frame to send after a switch: GARPs, NAs and multicast reports
    for the master, then the same, tagged, for each VLAN device on it (the
    switch learns MACs per VLAN, so an untagged GARP does not move those).
    state_of reads a VLAN device's state (netfo.kernel.master.master_state;
    tests pass a stub)."""
    frames = _frames(mac, state, None)
    for vid, name in state.get("vlans") or ():
        vst = state_of(name) if state_of else {}
        frames += _frames(vst.get("mac") or mac, vst, vid)
    return frames


# -- path probes (netfo.probe) ---------------------------------------------

ND_NS, ND_NA = 135, 136


def arp_request(mac: str, src4: Optional[str], target: str) -> bytes:
    hw = _mac(mac)
    sender = ipaddress.IPv4Address(src4 or "0.0.0.0").packed
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + sender + bytes(6) + \
        ipaddress.IPv4Address(target).packed
    return _ether(BROADCAST, hw, ETH_P_ARP, None) + arp


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
