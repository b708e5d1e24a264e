"""Netlink: find links, read and change them, move addresses and routes.

The daemon reads as a sequence of intentions because the pyroute2 calls
live here."""
from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import os
import socket
import struct
import time
from typing import Iterable, Optional

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWQDISC, RTMGRP_LINK
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.tcmsg import tcmsg

from .. import lifetimes
from ..errors import NetfoError
from ..group import Link
from . import nlmsg

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
IFF_PROMISC = 0x100
SIOCGIFNAME, SIOCGIFFLAGS = 0x8910, 0x8913
IFF_ALLMULTI = 0x200
IFA_F_NODAD = 0x02
RT_TABLE_LOCAL = 255
# Routes the kernel or router advertisements made: they come back by
# themselves and must not be copied as static routes.
AUTO_PROTOS = {2, 9}          # RTPROT_KERNEL, RTPROT_RA

log = logging.getLogger("netfo")


def link_from_msg(msg) -> Link:
    kind = None
    info = msg.get_attr("IFLA_LINKINFO")
    if info is not None:
        kind = info.get_attr("IFLA_INFO_KIND")
    flags = msg["flags"]
    carrier = msg.get_attr("IFLA_CARRIER")
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME"),
        mac=(msg.get_attr("IFLA_ADDRESS") or "").lower(),
        perm_mac=msg.get_attr("IFLA_PERM_ADDRESS"),
        up=bool(flags & IFF_UP),
        carrier=bool(carrier) if carrier is not None else bool(flags & IFF_LOWER_UP),
        mtu=msg.get_attr("IFLA_MTU") or 0,
        max_mtu=msg.get_attr("IFLA_MAX_MTU") or 0,
        kind=kind,
        arptype=msg["ifi_type"],
    )


IFINFO = struct.Struct("=BxHiII")       # struct ifinfomsg
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
# include/uapi/linux/if_link.h
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_INFO_KIND = 1, 3, 4, 18, 1
IFLA_CARRIER, IFLA_MAX_MTU, IFLA_PERM_ADDRESS = 33, 51, 54


def get(name: Optional[str] = None, index: Optional[int] = None) -> Optional[Link]:
    """One link as the kernel has it now (None: there is none), in this
    thread's network namespace.

    One RTM_GETLINK read here rather than through pyroute2, which decodes
    every attribute (stats, the per-family config arrays): 0.35 ms against
    0.045 ms natively, 12-42 ms against 1.4-1.9 ms in a TCG guest, where a
    re-plugged VF waited that long for its IFF_UP (this read decides it is
    a slave)."""
    attrs = nlmsg.attr(IFLA_IFNAME, name.encode() + b"\0") if name else b""
    req = IFINFO.pack(0, 0, 0 if name else index, 0, 0) + attrs
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.send(nlmsg.HDR.pack(nlmsg.HDR.size + len(req), RTM_GETLINK, NLM_F_REQUEST, 1, 0) + req)
        data = sock.recv(1 << 16)
    length, kind = nlmsg.HDR.unpack_from(data)[:2]
    if kind == nlmsg.ERROR:
        code = nlmsg.error(data)
        if code in (errno.ENODEV, errno.ENOENT):
            return None
        raise NetlinkError(code, os.strerror(code))
    return _link_from_bytes(data, nlmsg.HDR.size, length)


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _u32(attrs: dict, kind: int) -> int:
    return struct.unpack_from("=I", attrs[kind])[0] if kind in attrs else 0


def _link_from_bytes(data: bytes, pos: int, end: int) -> Link:
    """link_from_msg's Link from a raw RTM_NEWLINK body (ifinfomsg at pos)."""
    arptype, index, flags = IFINFO.unpack_from(data, pos)[1:4]
    a = dict(nlmsg.attrs(data, pos + IFINFO.size, end))
    kind = None
    if IFLA_LINKINFO in a:
        info = dict(nlmsg.attrs(a[IFLA_LINKINFO], 0, len(a[IFLA_LINKINFO])))
        kind = info[IFLA_INFO_KIND].rstrip(b"\0").decode() if IFLA_INFO_KIND in info else None
    carrier = a[IFLA_CARRIER][0] if IFLA_CARRIER in a else None
    return Link(
        index=index,
        name=a[IFLA_IFNAME].rstrip(b"\0").decode(errors="replace") if IFLA_IFNAME in a else None,
        mac=_mac(a.get(IFLA_ADDRESS, b"")),
        perm_mac=_mac(a[IFLA_PERM_ADDRESS]) if IFLA_PERM_ADDRESS in a else None,
        up=bool(flags & IFF_UP),
        carrier=bool(carrier) if carrier is not None else bool(flags & IFF_LOWER_UP),
        mtu=_u32(a, IFLA_MTU),
        max_mtu=_u32(a, IFLA_MAX_MTU),
        kind=kind,
        arptype=arptype,
    )


def link_socket(blocking: bool = True) -> socket.socket:
    """A netlink socket that receives every link event (RTMGRP_LINK)."""
    flags = 0 if blocking else socket.SOCK_NONBLOCK
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | flags, socket.NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, RTMGRP_LINK))
    return sock


def link_events(data: bytes):
    """The ifindex of each link message in a datagram of RTMGRP_LINK.

    Only the fixed headers are read: pyroute2 parses every attribute of a
    link message (0.2-1 ms each, measured), while an event only says which
    link to read afresh."""
    pos = 0
    while pos + nlmsg.HDR.size <= len(data):
        length, kind = nlmsg.HDR.unpack_from(data, pos)[:2]
        if length < nlmsg.HDR.size or pos + length > len(data):
            return
        if kind in (RTM_NEWLINK, RTM_DELLINK) and length >= nlmsg.HDR.size + IFINFO.size:
            yield IFINFO.unpack_from(data, pos + nlmsg.HDR.size)[2]
        pos += (length + 3) & ~3


def live_ready(index: int) -> Optional[bool]:
    """Whether the link can transmit this instant: admin up and the driver's
    carrier bit (sysfs), which netlink may report a second later (B-21).
    False once it is gone; None if it cannot be told (renamed meanwhile)."""
    try:
        name = socket.if_indextoname(index)
    except OSError:
        return False
    try:
        with open(f"/sys/class/net/{name}/flags") as f:
            if not int(f.read(), 16) & IFF_UP:
                return False
        with open(f"/sys/class/net/{name}/carrier") as f:
            return f.read().strip() == "1"
    except OSError as e:
        return False if e.errno == errno.EINVAL else None     # EINVAL: no carrier while down


def speed_duplex(name: str, index: int) -> tuple:
    """(Mbit/s or None, "full"/"half" or None) as the slave's driver reports
    them: sysfs, the kernel's own view of ethtool's link settings (what
    /proc/net/bonding prints).  None where the driver does not say or the
    link is down; and for a name that sysfs gives to another link (a /sys
    mounted for another network namespace)."""
    base = f"/sys/class/net/{name}/"
    try:
        with open(base + "ifindex") as f:
            if int(f.read()) != index:
                return None, None
    except (OSError, ValueError):
        return None, None
    speed = duplex = None
    try:
        with open(base + "speed") as f:
            value = int(f.read())
        speed = value if 0 < value < 0x7fffffff else None      # -1: SPEED_UNKNOWN
    except (OSError, ValueError):       # EINVAL: down, or no ethtool link settings
        pass
    try:
        with open(base + "duplex") as f:
            value = f.read().strip()
        duplex = value if value in ("full", "half") else None
    except OSError:
        pass
    return speed, duplex


DUMP_TRIES = 5


def whole(request, *args, **kwargs) -> tuple:
    """The messages of a dump (request: ipr.link, ipr.get_addr, ...),
    asked again while the kernel flags it interrupted: the table changed
    under the dump (a link renamed, as `netfo up` does), so some entries
    may be missing.  pyroute2 says so after the last message."""
    for attempt in range(DUMP_TRIES):
        try:
            return tuple(request(*args, **kwargs))
        except NetlinkDumpInterrupted:
            if attempt == DUMP_TRIES - 1:
                raise


def dump(ipr: IPRoute) -> list:
    return [link_from_msg(m) for m in whole(ipr.link, "dump")]


def promiscuous(index: int) -> bool:
    """Whether link index is promiscuous now: two ioctls, as the control
    loop asks every tick (a netlink request decoded by pyroute2 costs ~100
    times more)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            req = fcntl.ioctl(s, SIOCGIFNAME, struct.pack("16si", b"", index))
            req = fcntl.ioctl(s, SIOCGIFFLAGS, req[:16] + bytes(len(req) - 16))
        except OSError:
            return False
    return bool(struct.unpack_from("16sh", req)[1] & IFF_PROMISC)


def txqlen(ipr: IPRoute, index: int) -> int:
    return ipr.link("get", index=index)[0].get_attr("IFLA_TXQLEN")


def alias(ipr: IPRoute, index: int) -> Optional[str]:
    """IFLA_IFALIAS of index (None: no alias, or no such link)."""
    try:
        return ipr.link("get", index=index)[0].get_attr("IFLA_IFALIAS")
    except (NetlinkError, IndexError):
        return None


def set_link(ipr: IPRoute, index: int, what: str, **kw) -> None:
    """ipr.link('set') with a one-line error naming what was attempted."""
    try:
        ipr.link("set", index=index, **kw)
    except NetlinkError as e:
        raise NetfoError(f"cannot {what}: {e.args[1] if len(e.args) > 1 else e}") from None


MAX_GSO = 65536        # what a virtio-net header and the loop's buffers carry
MAX_SIZES = ("IFLA_GRO_MAX_SIZE", "IFLA_GSO_MAX_SIZE")


def max_sizes(ipr: IPRoute, index: int) -> dict:
    """gro_max_size and gso_max_size of a link (those the kernel reports)."""
    try:
        msg = ipr.link("get", index=index)[0]
    except (NetlinkError, IndexError):
        return {}
    return {a: msg.get_attr(a) for a in MAX_SIZES if msg.get_attr(a) is not None}


def cap_max_sizes(ipr: IPRoute, index: int, name: str, sizes: Optional[dict] = None) -> None:
    """Lower gro_max_size/gso_max_size above MAX_GSO to MAX_GSO (sizes:
    max_sizes() as just read, None: read them)."""
    for attr, value in (max_sizes(ipr, index) if sizes is None else sizes).items():
        if value > MAX_GSO:
            set_link(ipr, index, f"cap {name} {attr[5:].lower()} to {MAX_GSO}",
                     **{attr[5:].lower(): MAX_GSO})


def restore_max_sizes(ipr: IPRoute, index: int, name: str, saved: dict) -> None:
    """Put back what cap_max_sizes lowered (saved: max_sizes() before)."""
    now = max_sizes(ipr, index)
    for attr, value in (saved or {}).items():
        if attr in now and now[attr] != value:
            set_link(ipr, index, f"restore {name} {attr[5:].lower()}", **{attr[5:].lower(): value})


def rename(ipr: IPRoute, index: int, new: str) -> None:
    """Rename while down: kernels before 6.2 refuse to rename an UP link (B-10)."""
    set_link(ipr, index, f"set link {index} down", state="down")
    set_link(ipr, index, f"rename link {index} to {new}", ifname=new)


TC_H_ROOT = 0xFFFFFFFF
NLM_F_REPLACE = 0x100


def set_qdisc_noqueue(ipr: IPRoute, index: int, name: str) -> None:
    """The kernel master is IFF_NO_QUEUE (B-2): no second qdisc on the way.
    `tc qdisc replace dev NAME root noqueue` as one netlink request (pyroute2
    has no noqueue kind): no process on the way to ready."""
    msg = tcmsg()
    msg["index"], msg["handle"], msg["parent"] = index, 0, TC_H_ROOT
    msg["attrs"] = [("TCA_KIND", "noqueue")]
    try:
        ipr.nlm_request(msg, msg_type=RTM_NEWQDISC,
                        msg_flags=NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE)
    except NetlinkError as e:
        raise NetfoError(f"cannot set {name}'s qdisc to noqueue: "
                         f"{e.args[1] if len(e.args) > 1 else e}") from None


# -- addresses and routes ----------------------------------------------------

def addresses(ipr: IPRoute, index: int) -> list:
    """Addresses to carry between standby and master, each with its
    lifetimes as the kernel has them now (seconds left, FOREVER for a
    permanent one) and the monotonic time of this read: see lifetimes.py.

    IPv6 link-local addresses are left out: the kernel makes them itself from
    the MAC, on whichever interface has IPv6 enabled.
    """
    out = []
    read_at = time.monotonic()     # before the read: the sum can only err shorter
    msgs = whole(ipr.get_addr, index=index)
    for msg in msgs:
        addr = msg.get_attr("IFA_ADDRESS")
        if msg["family"] == 10 and ipaddress.ip_address(addr).is_link_local:
            continue
        ci = msg.get_attr("IFA_CACHEINFO") or {}
        out.append({
            "family": msg["family"],
            "address": msg.get_attr("IFA_LOCAL") or addr,
            "prefixlen": msg["prefixlen"],
            "broadcast": msg.get_attr("IFA_BROADCAST"),
            "flags": msg.get_attr("IFA_FLAGS") or msg["flags"],
            "valid": ci.get("ifa_valid", lifetimes.FOREVER),
            "preferred": ci.get("ifa_preferred", lifetimes.FOREVER),
            "read_at": read_at,
        })
    return out


def leased(addrs: Iterable[dict]) -> list:
    """The addresses that someone (a DHCP client, SLAAC) keeps alive."""
    return [a for a in addrs if lifetimes.finite(a.get("valid"))]


def add_addresses(ipr: IPRoute, index: int, addrs: Iterable[dict], extra_flags: int = 0) -> None:
    """Add each address with what is left of its lifetimes (a permanent one
    stays permanent); one that expired since it was read is left out, and
    said so.  pyroute2's addr() drops lifetimes in some versions, hence the
    message built here."""
    for a in addrs:
        where = f"{a['address']}/{a['prefixlen']}"
        left = lifetimes.remaining(a)
        if left is None:
            log.warning("%s expired (its lease ran out) since it was read: not added back", where)
            continue
        valid, preferred = left
        flags = (a["flags"] or 0) | extra_flags
        msg = ifaddrmsg()
        msg["family"], msg["prefixlen"], msg["index"] = a["family"], a["prefixlen"], index
        msg["flags"] = flags & 0xFF
        attrs = [("IFA_ADDRESS", a["address"]), ("IFA_FLAGS", flags)]
        if a["family"] == socket.AF_INET:
            attrs.append(("IFA_LOCAL", a["address"]))
        if a.get("broadcast"):
            attrs.append(("IFA_BROADCAST", a["broadcast"]))
        if lifetimes.finite(valid):
            attrs.append(("IFA_CACHEINFO", {"ifa_preferred": preferred, "ifa_valid": valid,
                                            "cstamp": 0, "tstamp": 0}))
        msg["attrs"] = attrs
        try:
            ipr.nlm_request(msg, msg_type=RTM_NEWADDR,
                            msg_flags=NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise NetfoError(f"cannot add address {where}: {e}") from None


def routes(ipr: IPRoute, index: int) -> list:
    """Routes through index that a user or DHCP made (all tables, both
    families); an IPv6 route that expires keeps its expiry (seconds left at
    read_at), as addresses keep their lifetimes."""
    out = []
    for family in (2, 10):
        read_at = time.monotonic()
        msgs = whole(ipr.route, "dump", family=family)
        for msg in msgs:
            if msg.get_attr("RTA_OIF") != index:
                continue
            table = msg.get_attr("RTA_TABLE") or msg["table"]
            if table == RT_TABLE_LOCAL or msg["proto"] in AUTO_PROTOS:
                continue
            dst = msg.get_attr("RTA_DST")
            route = {
                "family": family, "table": table, "proto": msg["proto"],
                "scope": msg["scope"], "type": msg["type"],
                "dst": f"{dst}/{msg['dst_len']}" if dst else None,
                "gateway": msg.get_attr("RTA_GATEWAY"),
                "priority": msg.get_attr("RTA_PRIORITY"),
                "prefsrc": msg.get_attr("RTA_PREFSRC"),
            }
            expires = (msg.get_attr("RTA_CACHEINFO") or {}).get("rta_expires", 0)
            if family == 10 and expires > 0:     # clock ticks (USER_HZ); 0: none
                route["expires"] = expires / os.sysconf("SC_CLK_TCK")
                route["read_at"] = read_at
            out.append(route)
    return out


def add_routes(ipr: IPRoute, index: int, rts: Iterable[dict]) -> None:
    for r in rts:
        kw = {k: v for k, v in r.items() if v is not None and k not in ("expires", "read_at")}
        kw["oif"] = index
        if "dst" not in kw:
            kw["dst"] = "default" if r["family"] == 2 else "::/0"
        if r.get("expires"):
            left = lifetimes.left(r["expires"], r.get("read_at"))
            if left == 0:
                log.warning("route %s expired since it was read: not added back", kw["dst"])
                continue
            kw["RTA_EXPIRES"] = struct.pack("=I", left)     # pyroute2 types it as raw bytes
        try:
            ipr.route("add", **kw)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise NetfoError(f"cannot add route {kw['dst']}: {e}") from None


def flush_addresses(ipr: IPRoute, index: int, addrs: Iterable[dict]) -> None:
    for a in addrs:
        try:
            ipr.addr("del", index=index, address=a["address"], prefixlen=a["prefixlen"],
                     family=a["family"])
        except NetlinkError:
            pass
