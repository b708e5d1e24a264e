"""netfo.notify: every announcement frame dissected by scapy, field by field.

No root, no network: the builders are pure, master_state() only reads.
"""
from __future__ import annotations

import socket
import struct

import pytest
from scapy.config import conf
from scapy.layers.igmp import IGMPv3, IGMPv3_MR
from scapy.layers.inet import IP, IPOption_Router_Alert
from scapy.layers.inet6 import (ICMPv6MLDMultAddrRec, ICMPv6MLReport2, ICMPv6ND_NA, ICMPv6NDOptDstLLAddr,
                                IPv6, IPv6ExtHdrHopByHop, RouterAlert)
from scapy.layers.l2 import ARP, Dot1Q, Ether

from netfo import frames as build
from netfo.kernel import master

MAC = "52:54:00:00:12:53"
VMAC = "52:54:00:00:99:01"


@pytest.fixture(autouse=True)
def long_lists(monkeypatch):
    # scapy gives up past 100 records; a full report holds 183 (IGMPv3).
    monkeypatch.setattr(conf, "max_list_count", 1000)


def mld_records(rep) -> list:
    """scapy chains each MLDv2 record as the payload of the one before."""
    out = []
    for r in rep.records:
        while isinstance(r, ICMPv6MLDMultAddrRec):
            out.append(r)
            r = r.payload
    return out


def checksums_ok(frame: bytes, *fields) -> bool:
    """Delete each (layer, field) and let scapy recompute it: equal bytes
    mean our checksum is the one scapy computes."""
    pkt = Ether(frame)
    for layer, name in fields:
        delattr(pkt[layer], name)
    return bytes(pkt) == frame


def test_checksum_check_is_not_vacuous():
    """A wrong checksum must fail checksums_ok(), or the asserts below prove nothing."""
    cases = [(build.unsolicited_na(MAC, "2001:db8::10"), [(ICMPv6ND_NA, "cksum")], 14 + 40 + 2),
             (build.igmpv3_report(MAC, "192.0.2.1", ["239.1.1.1"]), [(IP, "chksum")], 14 + 10),
             (build.igmpv3_report(MAC, "192.0.2.1", ["239.1.1.1"]), [(IGMPv3, "chksum")], 14 + 24 + 2),
             (build.mldv2_report(MAC, "fe80::1", ["ff02::fb"]), [(ICMPv6MLReport2, "cksum")], 14 + 48 + 2)]
    for frame, fields, at in cases:
        assert checksums_ok(frame, *fields)
        bad = frame[:at] + bytes([frame[at] ^ 0xFF]) + frame[at + 1:]
        assert not checksums_ok(bad, *fields)


def tag(pkt, vlan):
    if vlan is None:
        assert Dot1Q not in pkt
    else:
        assert pkt[Ether].type == 0x8100
        assert pkt[Dot1Q].vlan == vlan and pkt[Dot1Q].prio == 0


# -- GARP ----------------------------------------------------------------------

@pytest.mark.parametrize("vlan", [None, 1, 100, 4094])
def test_garp(vlan):
    f = build.garp(MAC, "192.0.2.10", vlan=vlan)
    assert len(f) == 42 + (4 if vlan else 0)
    p = Ether(f)
    assert p[Ether].dst == "ff:ff:ff:ff:ff:ff" and p[Ether].src == MAC
    tag(p, vlan)
    a = p[ARP]
    assert (a.hwtype, a.ptype, a.hwlen, a.plen) == (1, 0x0800, 6, 4)
    assert a.op == 1                                   # request, as the kernel
    assert a.psrc == a.pdst == "192.0.2.10"
    assert a.hwsrc == MAC
    assert a.hwdst == "00:00:00:00:00:00"              # arp_send(..., target_hw=NULL)
    assert (Dot1Q if vlan else Ether) in p and p.lastlayer() is a


@pytest.mark.parametrize("mac,ip,vlan", [
    ("52:54:00:00:12", "192.0.2.1", None), ("zz:54:00:00:12:53", "192.0.2.1", None),
    (MAC, "192.0.2.256", None), (MAC, "2001:db8::1", None), (MAC, "192.0.2.1", 0),
    (MAC, "192.0.2.1", 4095)])
def test_garp_bad_arguments(mac, ip, vlan):
    with pytest.raises(ValueError):
        build.garp(mac, ip, vlan=vlan)


# -- unsolicited NA --------------------------------------------------------------

@pytest.mark.parametrize("src6,vlan", [(None, None), ("fe80::5054:ff:fe00:1253", None),
                                       (None, 42)])
def test_unsolicited_na(src6, vlan):
    f = build.unsolicited_na(MAC, "2001:db8::10", src6=src6, vlan=vlan)
    p = Ether(f)
    assert p[Ether].dst == "33:33:00:00:00:01" and p[Ether].src == MAC
    tag(p, vlan)
    ip = p[IPv6]
    assert ip.dst == "ff02::1" and ip.hlim == 255 and ip.nh == 58
    assert ip.src == (src6 or "2001:db8::10")          # the kernel sources it from the target
    assert ip.tc == 0 and ip.fl == 0 and ip.plen == 32
    na = p[ICMPv6ND_NA]
    assert na.type == 136 and na.code == 0
    assert (na.R, na.S, na.O) == (0, 0, 1)
    assert na.tgt == "2001:db8::10"
    opt = p[ICMPv6NDOptDstLLAddr]
    assert opt.type == 2 and opt.len == 1 and opt.lladdr == MAC
    assert checksums_ok(f, (ICMPv6ND_NA, "cksum"))


def test_unsolicited_na_checksum_covers_source():
    a = Ether(build.unsolicited_na(MAC, "2001:db8::10"))[ICMPv6ND_NA].cksum
    b = Ether(build.unsolicited_na(MAC, "2001:db8::10", src6="fe80::1"))[ICMPv6ND_NA].cksum
    assert a != b


def test_unsolicited_na_bad_arguments():
    with pytest.raises(ValueError):
        build.unsolicited_na(MAC, "192.0.2.1")
    with pytest.raises(ValueError):
        build.unsolicited_na(MAC, "2001:db8::1", src6="nonsense")


# -- IGMPv3 ------------------------------------------------------------------------

@pytest.mark.parametrize("vlan", [None, 7])
def test_igmpv3_report(vlan):
    groups = ["239.1.2.3", "224.0.0.251", "232.0.0.1"]
    f = build.igmpv3_report(MAC, "192.0.2.10", groups, vlan=vlan)
    p = Ether(f)
    assert p[Ether].dst == "01:00:5e:00:00:16" and p[Ether].src == MAC
    tag(p, vlan)
    ip = p[IP]
    assert ip.src == "192.0.2.10" and ip.dst == "224.0.0.22"
    assert ip.ttl == 1 and ip.proto == 2 and ip.tos == 0xC0 and ip.flags == "DF"
    assert ip.ihl == 6 and ip.len == 24 + 8 + 8 * len(groups)
    assert len(ip.options) == 1 and isinstance(ip.options[0], IPOption_Router_Alert)
    assert ip.options[0].alert == 0 and ip.options[0].length == 4
    igmp = p[IGMPv3]
    assert igmp.type == 0x22
    mr = p[IGMPv3_MR]
    assert mr.numgrp == len(groups)
    assert [r.maddr for r in mr.records] == groups
    assert all(r.rtype == 2 and r.numsrc == 0 and r.srcaddrs == [] for r in mr.records)
    assert checksums_ok(f, (IP, "chksum"), (IGMPv3, "chksum"))


def test_igmpv3_report_limits():
    with pytest.raises(ValueError):
        build.igmpv3_report(MAC, "192.0.2.10", ["192.0.2.1"])        # not multicast
    with pytest.raises(ValueError):
        build.igmpv3_report(MAC, "192.0.2.10", ["239.0.0.1"] * (build.IGMP_MAX_RECORDS + 1))
    full = build.igmpv3_report(MAC, "0.0.0.0", ["239.0.0.1"] * build.IGMP_MAX_RECORDS)
    assert len(full) - 14 <= 1500 and Ether(full)[IP].src == "0.0.0.0"


# -- MLDv2 -------------------------------------------------------------------------

@pytest.mark.parametrize("vlan", [None, 300])
def test_mldv2_report(vlan):
    groups = ["ff02::1:ff00:10", "ff02::fb", "ff05::1:3"]
    f = build.mldv2_report(MAC, "fe80::5054:ff:fe00:1253", groups, vlan=vlan)
    p = Ether(f)
    assert p[Ether].dst == "33:33:00:00:00:16" and p[Ether].src == MAC
    tag(p, vlan)
    ip = p[IPv6]
    assert ip.src == "fe80::5054:ff:fe00:1253" and ip.dst == "ff02::16"
    assert ip.hlim == 1 and ip.nh == 0 and ip.plen == 8 + 8 + 20 * len(groups)
    hbh = p[IPv6ExtHdrHopByHop]
    assert hbh.nh == 58 and hbh.len == 0
    ra = [o for o in hbh.options if isinstance(o, RouterAlert)]
    assert len(ra) == 1 and ra[0].value == 0                # MLD
    rep = p[ICMPv6MLReport2]
    assert rep.type == 143 and rep.records_number == len(groups)
    recs = mld_records(rep)
    assert [r.dst for r in recs] == groups
    assert all(r.rtype == 2 and r.auxdata_len == 0 and r.sources_number == 0 and not r.sources
               for r in recs)
    assert checksums_ok(f, (ICMPv6MLReport2, "cksum"))


def test_mldv2_report_limits():
    with pytest.raises(ValueError):
        build.mldv2_report(MAC, "2001:db8::1", ["ff02::fb"])    # source not link-local
    with pytest.raises(ValueError):
        build.mldv2_report(MAC, "fe80::1", ["2001:db8::1"])     # not multicast
    with pytest.raises(ValueError):
        build.mldv2_report(MAC, "fe80::1", ["ff02::fb"] * (build.MLD_MAX_RECORDS + 1))
    full = build.mldv2_report(MAC, "::", ["ff02::fb"] * build.MLD_MAX_RECORDS)
    assert len(full) - 14 <= 1500 and checksums_ok(full, (ICMPv6MLReport2, "cksum"))


# -- announcements -------------------------------------------------------------------

STATE = {"ip4": ["192.0.2.10", "198.51.100.7"],
         "ip6": ["2001:db8::10", "fe80::5054:ff:fe00:1253"],
         "link_local6": "fe80::5054:ff:fe00:1253",
         "groups4": ["239.1.1.1", "239.1.1.2", "224.0.0.251"],
         "groups6": ["ff02::1:ff00:10", "ff02::1:ff00:1253"],
         "vlans": [(100, "ens10.100")]}
VSTATE = {"ip4": ["10.100.0.2"], "ip6": ["fe80::1"], "link_local6": "fe80::1",
          "groups4": [], "groups6": ["ff02::1:ff00:1"], "vlans": [], "mac": VMAC}


def kinds(frames):
    out = []
    for f in frames:
        p = Ether(f)
        vid = p[Dot1Q].vlan if Dot1Q in p else None
        kind = ("arp" if ARP in p else "na" if ICMPv6ND_NA in p else
                "igmp" if IGMPv3 in p else "mld" if ICMPv6MLReport2 in p else "?")
        out.append((vid, kind, p[Ether].src))
    return out


def test_announcements_counts_and_order():
    asked = []
    frames = build.announcements(MAC, STATE, state_of=lambda n: asked.append(n) or VSTATE)
    assert asked == ["ens10.100"]
    assert kinds(frames) == [(None, "arp", MAC)] * 2 + [(None, "na", MAC)] * 2 + [
        (None, "igmp", MAC), (None, "mld", MAC),
        (100, "arp", VMAC), (100, "na", VMAC), (100, "mld", VMAC)]
    p = [Ether(f) for f in frames]
    assert [x[ARP].psrc for x in p if ARP in x] == ["192.0.2.10", "198.51.100.7", "10.100.0.2"]
    assert [x[ICMPv6ND_NA].tgt for x in p if ICMPv6ND_NA in x] == [
        "2001:db8::10", "fe80::5054:ff:fe00:1253", "fe80::1"]
    igmp = [x for x in p if IGMPv3 in x][0]
    assert igmp[IP].src == "192.0.2.10"
    assert [r.maddr for r in igmp[IGMPv3_MR].records] == STATE["groups4"]
    mld = [x for x in p if ICMPv6MLReport2 in x]
    assert mld[0][IPv6].src == STATE["link_local6"] and mld[1][IPv6].src == "fe80::1"
    assert [r.dst for r in mld_records(mld[0][ICMPv6MLReport2])] == STATE["groups6"]


def test_announcements_vlan_without_own_mac_uses_masters():
    vst = dict(VSTATE, mac=None)
    frames = build.announcements(MAC, STATE, state_of=lambda n: vst)
    assert {src for _, _, src in kinds(frames)} == {MAC}


def test_announcements_edge_cases():
    empty = {"ip4": [], "ip6": [], "link_local6": None, "groups4": [], "groups6": [], "vlans": []}
    assert build.announcements(MAC, empty) == []
    only_groups = dict(empty, groups4=["239.0.0.%d" % i for i in range(1, 201)],
                       groups6=["ff0e::%x" % i for i in range(1, 101)])
    frames = build.announcements(MAC, only_groups)
    k = [kind for _, kind, _ in kinds(frames)]
    assert k == ["igmp", "igmp", "mld", "mld"]          # split to fit 1500 bytes
    p = [Ether(f) for f in frames]
    assert [x[IGMPv3_MR].numgrp for x in p[:2]] == [build.IGMP_MAX_RECORDS, 200 - build.IGMP_MAX_RECORDS]
    assert [x[ICMPv6MLReport2].records_number for x in p[2:]] == [build.MLD_MAX_RECORDS, 100 - build.MLD_MAX_RECORDS]
    assert [r.maddr for x in p[:2] for r in x[IGMPv3_MR].records] == only_groups["groups4"]
    assert [r.dst for x in p[2:] for r in mld_records(x[ICMPv6MLReport2])] == only_groups["groups6"]
    assert p[0][IP].src == "0.0.0.0" and p[2][IPv6].src == "::"


# -- master_state --------------------------------------------------------------------

KEYS = {"ip4", "ip6", "link_local6", "groups4", "groups6", "vlans"}


def test_master_state_lo():
    st = master.master_state("lo")
    assert KEYS <= set(st)
    assert "127.0.0.1" in st["ip4"]
    assert "::1" not in st["ip6"]                      # host scope: nothing to announce
    assert "224.0.0.1" not in st["groups4"] and "ff02::1" not in st["groups6"]
    assert all(isinstance(st[k], list) for k in KEYS - {"link_local6"})
    assert all(isinstance(v, tuple) and len(v) == 2 for v in st["vlans"])


def test_master_state_missing_interface():
    st = master.master_state("nonexist0")
    assert st["ip4"] == st["ip6"] == st["groups4"] == st["groups6"] == st["vlans"] == []
    assert st["link_local6"] is None


@pytest.mark.parametrize("bad", ["", "a" * 16, "a/b", "a:1", "a b", None, 3])
def test_master_state_bad_name(bad):
    with pytest.raises(ValueError):
        master.master_state(bad)


def hex4(g):            # /proc/net/igmp prints the __be32 as the host reads it
    return "%08X" % struct.unpack("=I", socket.inet_aton(g))[0]


def test_proc_parsing(monkeypatch):
    igmp = ["Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter",
            "1\tlo        :     1      V3",
            f"\t\t\t\t{hex4('224.0.0.1')}     1 0:00000000\t\t0",
            "5\tens10nsbyab:     3      V3",
            f"\t\t\t\t{hex4('239.1.2.3')}     1 0:00000000\t\t0",
            f"\t\t\t\t{hex4('224.0.0.1')}     1 0:00000000\t\t0",
            "6\tens10     :     3      V3",
            f"\t\t\t\t{hex4('224.0.0.251')}     1 0:00000000\t\t0",
            f"\t\t\t\t{hex4('224.0.0.1')}     1 0:00000000\t\t0",
            f"\t\t\t\t{hex4('239.9.9.9')}     1 0:00000000\t\t0"]
    igmp6 = ["1    lo              ff020000000000000000000000000001     1 0000000C 0",
             "6    ens10           ff0200000000000000000001ff000010     1 00000004 0",
             "6    ens10           ff020000000000000000000000000001     1 0000000C 0",
             "6    ens10           ff010000000000000000000000000001     1 00000008 0",
             "6    ens10           ff0200000000000000000000000000fb     1 00000004 0",
             "7    ens10.100       ff0200000000000000000001ff000001     1 00000004 0"]
    files = {"/proc/net/igmp": igmp, "/proc/net/igmp6": igmp6}
    monkeypatch.setattr(master, "_read", lambda path: files.get(path, []))
    assert master._groups4("ens10") == ["224.0.0.251", "239.9.9.9"]
    assert master._groups4("ens10nsbyab") == ["239.1.2.3"]
    assert master._groups4("lo") == [] and master._groups4("eth9") == []
    assert master._groups6("ens10") == ["ff02::1:ff00:10", "ff02::fb"]
    assert master._groups6("ens10.100") == ["ff02::1:ff00:1"]
    files.clear()
    assert master._groups4("ens10") == [] and master._groups6("ens10") == []


class FakeMsg(dict):
    def __init__(self, attrs, **fields):
        super().__init__(fields)
        self.attrs = attrs

    def get_attr(self, name):
        return self.attrs.get(name)


def vlan_link(name, vid, link=6, up=True, proto=0x8100, kind="vlan", netnsid=None):
    data = FakeMsg({"IFLA_VLAN_ID": vid, "IFLA_VLAN_PROTOCOL": proto})
    info = FakeMsg({"IFLA_INFO_KIND": kind, "IFLA_INFO_DATA": data})
    return FakeMsg({"IFLA_IFNAME": name, "IFLA_LINK": link, "IFLA_LINKINFO": info,
                    "IFLA_LINK_NETNSID": netnsid}, flags=0x1043 if up else 0x1002)


class FakeIPRoute:
    """What pyroute2 returns for a master (index 6) with a mix of addresses
    and of devices stacked on it: exercises master_state's filters without
    creating any interface."""
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def link(self, cmd, index=None):
        if cmd == "get":
            return [FakeMsg({"IFLA_ADDRESS": MAC, "IFLA_IFNAME": "ens10"}, flags=0x1043)]
        return [vlan_link("ens10.100", 100), vlan_link("ens10.200", 200, up=False),
                vlan_link("ens10.300", 300, proto=0x88A8), vlan_link("other.5", 5, link=9),
                vlan_link("ens10.400", 400, netnsid=1), vlan_link("mv0", 0, kind="macvlan"),
                FakeMsg({"IFLA_IFNAME": "ens10nsby"}, flags=0x1003)]

    def get_addr(self, index=None):
        assert index == 6
        v4 = lambda local, addr: FakeMsg({"IFA_LOCAL": local, "IFA_ADDRESS": addr},
                                        family=2, scope=0, flags=0x80)
        v6 = lambda addr, flags, scope=0: FakeMsg({"IFA_ADDRESS": addr, "IFA_FLAGS": flags},
                                                  family=10, scope=scope, flags=flags & 0xFF)
        return [v4("192.0.2.10", "192.0.2.10"), v4("10.0.0.1", "10.0.0.2"),      # point-to-point
                v6("2001:db8::10", 0x80), v6("2001:db8::bad", 0x08),               # DAD failed
                v6("2001:db8::ee", 0x40), v6("2001:db8::b0", 0x44),              # tentative, optimistic
                v6("fe80::aaaa", 0x44, 253), v6("fe80::5054:ff:fe00:1253", 0x80, 253),
                v6("::1", 0x80, 254)]


def test_master_state_filters(monkeypatch):
    import pyroute2
    monkeypatch.setattr(pyroute2, "IPRoute", FakeIPRoute)
    monkeypatch.setattr(master.socket, "if_nametoindex", lambda name: 6)
    monkeypatch.setattr(master, "_read", lambda path: [])
    st = master.master_state("ens10")
    assert st["ip4"] == ["192.0.2.10", "10.0.0.1"]            # the local end, not the peer
    assert st["ip6"] == ["2001:db8::10", "2001:db8::b0", "fe80::aaaa", "fe80::5054:ff:fe00:1253"]
    assert st["link_local6"] == "fe80::5054:ff:fe00:1253"     # not the optimistic one
    assert st["vlans"] == [(100, "ens10.100")]
    assert st["mac"] == MAC


def test_master_state_survives_netlink_errors(monkeypatch):
    import pyroute2

    class Broken(FakeIPRoute):
        def get_addr(self, index=None):
            raise OSError("gone")
    monkeypatch.setattr(pyroute2, "IPRoute", Broken)
    monkeypatch.setattr(master.socket, "if_nametoindex", lambda name: 6)
    st = master.master_state("ens10")
    assert st["ip4"] == [] and st["vlans"] == [] and KEYS <= set(st)
