"""What the kernel says about the master: the addresses and groups to
announce, its VLANs, and its link-layer multicast list (which has no netlink
notification, so the daemon polls it)."""
from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct

from . import links

ETH_P_8021Q = 0x8100
IFA_F_OPTIMISTIC, IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x04, 0x08, 0x40
RT_SCOPE_HOST = 254
IFF_UP = 0x1


def _valid_ifname(ifname) -> bool:
    return (isinstance(ifname, str) and 0 < len(ifname) < 16 and ifname not in (".", "..")
            and not any(c in ifname for c in "/: \t\n"))


def _read(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def _groups4(ifname: str) -> list[str]:
    # /proc/net/igmp prints each group's __be32 with %08X, i.e. as the host
    # reads it: pack it back in native order to get network order.
    out, dev = [], None
    for line in _read("/proc/net/igmp")[1:]:
        if not line.startswith("\t"):
            dev = line.split("\t", 1)[-1].split(":", 1)[0].strip()
        elif dev == ifname and line.strip():
            g = socket.inet_ntoa(struct.pack("=I", int(line.split()[0], 16)))
            if g != "224.0.0.1" and g not in out:      # all-hosts is never reported
                out.append(g)
    return out


def _groups6(ifname: str) -> list[str]:
    out = []
    for line in _read("/proc/net/igmp6"):
        f = line.split()
        if len(f) < 3 or f[1] != ifname:
            continue
        a = ipaddress.IPv6Address(bytes.fromhex(f[2]))
        # As the kernel's MAF_NOREPORT: not all-nodes, not interface-local.
        if a != ipaddress.IPv6Address("ff02::1") and a.packed[1] & 0xF >= 2 and str(a) not in out:
            out.append(str(a))
    return out


def master_state(ifname: str, ipr=None) -> dict:
    """What to announce for ifname, read now (no root needed). A missing
    interface or file gives empty lists; only a malformed name raises.
    Addresses still in duplicate address detection (or failed it) are left
    out, as ndisc_send_unsol_na() does: announcing them would steal them.
    "mac" (an addition) lets a VLAN device with its own MAC announce that.
    ipr: the caller's netlink socket (the daemon asks every probe round),
    else one is opened for this call."""
    if not _valid_ifname(ifname):
        raise ValueError(f"bad interface name: {ifname!r}")
    state = {"ip4": [], "ip6": [], "link_local6": None, "groups4": [], "groups6": [],
             "vlans": [], "mac": None}
    try:
        index = socket.if_nametoindex(ifname)
    except OSError:
        return state
    state["groups4"], state["groups6"] = _groups4(ifname), _groups6(ifname)
    try:
        if ipr is None:
            from pyroute2 import IPRoute
            own = IPRoute()
        else:
            own = contextlib.nullcontext(ipr)
        with own as ipr:
            for link in ipr.link("get", index=index):
                state["mac"] = link.get_attr("IFLA_ADDRESS")
            for m in links.whole(ipr.get_addr, index=index):
                flags = m.get_attr("IFA_FLAGS") or m["flags"]
                if m["family"] == socket.AF_INET:
                    state["ip4"].append(m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS"))
                    continue
                tentative = flags & IFA_F_TENTATIVE and not flags & IFA_F_OPTIMISTIC
                if m["scope"] == RT_SCOPE_HOST or tentative or flags & IFA_F_DADFAILED:
                    continue
                a = m.get_attr("IFA_ADDRESS")
                state["ip6"].append(a)
                if (ipaddress.IPv6Address(a).is_link_local and state["link_local6"] is None
                        and not flags & IFA_F_TENTATIVE):
                    state["link_local6"] = a
            for link in links.whole(ipr.link, "dump"):
                info = link.get_attr("IFLA_LINKINFO")
                data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
                # 802.1Q devices stacked right on ifname and up; a down one
                # would drop what its announcement draws in.
                if (link.get_attr("IFLA_LINK") == index and data is not None
                        and info.get_attr("IFLA_INFO_KIND") == "vlan"
                        and link.get_attr("IFLA_LINK_NETNSID") is None
                        and (data.get_attr("IFLA_VLAN_PROTOCOL") or ETH_P_8021Q) == ETH_P_8021Q
                        and link["flags"] & IFF_UP):
                    state["vlans"].append((data.get_attr("IFLA_VLAN_ID"), link.get_attr("IFLA_IFNAME")))
    except Exception:   # pyroute2 missing, netlink error, interface gone meanwhile
        pass
    return state


def mcast_list(ifindex: int) -> set:
    """Link-layer multicast addresses of ifindex, from /proc/net/dev_mcast."""
    out = set()
    try:
        with open("/proc/net/dev_mcast") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and int(parts[0]) == ifindex:
                    out.add(bytes.fromhex(parts[4]))
    except OSError:
        pass
    return out


# Neighbour states whose resolution failed or is failing (include/uapi/linux/neighbour.h)
NUD_INCOMPLETE, NUD_PROBE, NUD_FAILED = 0x01, 0x10, 0x20


def forget_failed_neighbours(ipr, ifindex: int) -> int:
    """Delete the master's neighbour entries that failed to resolve while
    no slave could transmit (incomplete, probing, failed): the guest's next
    packet then resolves afresh at once, where the entry would wait for its
    next retry (1 s). An entry that was stale before the gap (a send-only
    stream never confirms it) is probed into it and fails. Returns how
    many."""
    gone = 0
    for n in links.whole(ipr.get_neighbours, ifindex=ifindex):
        dst = n.get_attr("NDA_DST")
        if dst is None or not n["state"] & (NUD_INCOMPLETE | NUD_PROBE | NUD_FAILED):
            continue
        with contextlib.suppress(OSError):      # gone meanwhile, or resolved
            ipr.neigh("del", dst=dst, ifindex=ifindex, family=n["family"])
            gone += 1
    return gone
