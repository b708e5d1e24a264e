"""Netlink: find links, read and change them, move addresses and routes.

The daemon reads as a sequence of intentions because the pyroute2 calls
live here."""
from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from typing import Iterable, Optional

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_LINK

from ..errors import NetfoError
from .command import run
from ..group import Link

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200
IFA_F_NODAD = 0x02
RT_TABLE_LOCAL = 255
# Routes the kernel or router advertisements made: they come back by
# themselves and must not be copied as static routes.
AUTO_PROTOS = {2, 9}          # RTPROT_KERNEL, RTPROT_RA


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


def get(ipr: IPRoute, name: Optional[str] = None, index: Optional[int] = None) -> Optional[Link]:
    try:
        msgs = ipr.link("get", ifname=name) if name else ipr.link("get", index=index)
    except NetlinkError as e:
        if e.code in (errno.ENODEV, errno.ENOENT):
            return None
        raise
    return link_from_msg(msgs[0])


NLMSG = struct.Struct("=IHHII")         # struct nlmsghdr
IFINFO = struct.Struct("=BxHiII")       # struct ifinfomsg
RTM_NEWLINK, RTM_DELLINK = 16, 17


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
    while pos + NLMSG.size <= len(data):
        length, kind = NLMSG.unpack_from(data, pos)[:2]
        if length < NLMSG.size or pos + length > len(data):
            return
        if kind in (RTM_NEWLINK, RTM_DELLINK) and length >= NLMSG.size + IFINFO.size:
            yield IFINFO.unpack_from(data, pos + NLMSG.size)[2]
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


def dump(ipr: IPRoute) -> list:
    return [link_from_msg(m) for m in ipr.link("dump")]


def flags(ipr: IPRoute, index: int) -> int:
    return ipr.link("get", index=index)[0]["flags"]


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


def cap_max_sizes(ipr: IPRoute, index: int, name: str) -> None:
    """Lower gro_max_size/gso_max_size above MAX_GSO to MAX_GSO."""
    for attr, value in max_sizes(ipr, index).items():
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


def set_qdisc_noqueue(name: str) -> None:
    """The kernel master is IFF_NO_QUEUE (B-2): no second qdisc on the way."""
    run(["tc", "qdisc", "replace", "dev", name, "root", "noqueue"])


# -- addresses and routes ----------------------------------------------------

def addresses(ipr: IPRoute, index: int) -> list:
    """Addresses to carry between standby and master.

    IPv6 link-local addresses are left out: the kernel makes them itself from
    the MAC, on whichever interface has IPv6 enabled.
    """
    out = []
    for msg in ipr.get_addr(index=index):
        addr = msg.get_attr("IFA_ADDRESS")
        if msg["family"] == 10 and ipaddress.ip_address(addr).is_link_local:
            continue
        out.append({
            "family": msg["family"],
            "address": msg.get_attr("IFA_LOCAL") or addr,
            "prefixlen": msg["prefixlen"],
            "broadcast": msg.get_attr("IFA_BROADCAST"),
            "flags": msg.get_attr("IFA_FLAGS") or msg["flags"],
        })
    return out


def add_addresses(ipr: IPRoute, index: int, addrs: Iterable[dict], extra_flags: int = 0) -> None:
    for a in addrs:
        kw = {"index": index, "address": a["address"], "prefixlen": a["prefixlen"],
              "family": a["family"], "flags": (a["flags"] or 0) | extra_flags}
        if a.get("broadcast"):
            kw["broadcast"] = a["broadcast"]
        try:
            ipr.addr("add", **kw)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise NetfoError(f"cannot add address {a['address']}/{a['prefixlen']}: {e}") from None


def routes(ipr: IPRoute, index: int) -> list:
    """Routes through index that a user or DHCP made (all tables, both families)."""
    out = []
    for family in (2, 10):
        for msg in ipr.route("dump", family=family):
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
            out.append(route)
    return out


def add_routes(ipr: IPRoute, index: int, rts: Iterable[dict]) -> None:
    for r in rts:
        kw = {k: v for k, v in r.items() if v is not None}
        kw["oif"] = index
        if "dst" not in kw:
            kw["dst"] = "default" if r["family"] == 2 else "::/0"
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
