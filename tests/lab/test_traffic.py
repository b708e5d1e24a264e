"""Real traffic through netfo in the namespace lab: bulk TCP with checksums,
VLAN tags (B-28), multicast lists and delivery (B-14), and rx policies.

Every check is made on what was observed: digests and byte counts of the
data, frames captured on the master, `ip maddr` of the slaves, ping
duplicates and netfo's own per-slave counters.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from netfo.lab import GUEST_IP4, GUEST_IP6, MAC, PEER_IP4, PEER_IP6

from support.harness import Netfo
from support.state import io_uring_rings
from support.traffic import Capture, ping

MB = 1 << 20
SIZE = 64 * MB

# A TCP sink: accept one connection, hash everything until EOF, then close
# (the sender waits for that close, so its time covers the whole transfer).
SINK = r"""
import hashlib, json, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(1)
s.settimeout(30)
print("listening", flush=True)
c, _ = s.accept()
c.settimeout(30)
h, n, t0 = hashlib.sha256(), 0, time.monotonic()
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    h.update(b)
    n += len(b)
dt = time.monotonic() - t0
c.close()
print(json.dumps({"bytes": n, "sha256": h.hexdigest(), "seconds": dt}), flush=True)
"""

# A TCP source: send a file, half-close, wait for the sink to close.
SOURCE = r"""
import json, socket, sys, time
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = socket.create_connection((host, port), timeout=30)
t0 = time.monotonic()
with open(path, "rb") as f:
    sent = c.sendfile(f)
c.shutdown(socket.SHUT_WR)
c.recv(1)
print(json.dumps({"bytes": sent, "seconds": time.monotonic() - t0}), flush=True)
"""

# Join an IPv4 group on one interface and count datagrams until a deadline.
MCAST_RX = r"""
import json, socket, struct, sys, time
group, port, ifname, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((group, port))
mreqn = struct.pack("4s4si", socket.inet_aton(group), socket.inet_aton("0.0.0.0"),
                    socket.if_nametoindex(ifname))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
print("joined", flush=True)
s.settimeout(0.1)
seqs, end = [], time.monotonic() + seconds
while time.monotonic() < end:
    try:
        seqs.append(int(s.recv(2048).split(b" ")[0]))
    except socket.timeout:
        pass
print(json.dumps(seqs), flush=True)
"""

MCAST_TX = r"""
import socket, sys, time
group, port, src, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(src))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
for i in range(count):
    s.sendto(b"%d netfo-mcast" % i, (group, port))
    time.sleep(0.02)
"""


def _stats(st: dict, role: str) -> dict:
    return next(s for s in st["slaves"] if s["role"] == role)["stats"]


def tcp_transfer(lab, src_ns: str, dst_ns: str, dst_ip: str, path: str, port: int) -> tuple:
    """Send path from src_ns to dst_ip:port in dst_ns; (sink, source) JSON results."""
    sink = lab.popen(dst_ns, sys.executable, "-c", SINK, dst_ip, str(port),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sink.stdout.readline().strip() == "listening", sink.stderr.read()
        src = lab.run(src_ns, sys.executable, "-c", SOURCE, dst_ip, str(port), path,
                      check=False, timeout=60)
        assert src.returncode == 0, src.stderr
        out, err = sink.communicate(timeout=30)
        assert sink.returncode == 0, err
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    return json.loads(out), json.loads(src.stdout)


@pytest.fixture(scope="module")
def payload():
    """64 MB of random data in a file (all namespaces share /tmp) and its digest."""
    fd, path = tempfile.mkstemp(prefix="netfo-payload-")
    data = os.urandom(SIZE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    digest = hashlib.sha256(data).hexdigest()
    del data
    yield path, digest
    os.unlink(path)


# ------------------------------------------------------------ 1. bulk TCP



@pytest.mark.parametrize("tap_io,gro", [("syscalls", "off"), ("syscalls", "on"),
                                        ("uring", "on"), ("uring-write", "on")])
@pytest.mark.parametrize("labname", ["lab", "wire_lab"])
def test_tcp_64mb_each_direction_intact(request, labname, tap_io, gro, payload):
    """64 MB each way arrive byte-exact, through the primary.

    `lab`: the peer has offloads on, so 64 KB GSO frames with partial
    checksums cross netfo in both directions (vnet headers, 1.7 / B-45).
    `wire_lab`: the peer sends MTU-sized frames with full checksums.
    --gro on: those are merged before the master's stack sees them.
    """
    lab = request.getfixturevalue(labname)
    path, digest = payload
    if tap_io != "syscalls":
        from netfo import _fastpath
        if _fastpath.uring_problem():
            pytest.skip(_fastpath.uring_problem())
    n = Netfo(lab, "--tap-io", tap_io, "--gro", gro).start()
    try:
        assert n.status()["active"] == "primary"
        # uring: one ring reads the TAP, one writes it; uring-write: one; syscalls: none.
        assert io_uring_rings(n.pid) == {"uring": 2, "uring-write": 1, "syscalls": 0}[tap_io]
        rates, sizes = {}, {}
        for name, src_ns, dst_ns, dst_ip, port, mkey in (
                ("guest->peer", "guest", "peer", PEER_IP4, 5201, "tx_bytes"),
                ("peer->guest", "peer", "guest", GUEST_IP4, 5202, "rx_bytes")):
            st0 = n.status()
            got, sent = tcp_transfer(lab, src_ns, dst_ns, dst_ip, path, port)
            st1 = n.status()
            assert sent["bytes"] == SIZE, name
            assert got["bytes"] == SIZE, name
            assert got["sha256"] == digest, f"{name}: data corrupted on the way"
            assert sent["seconds"] < 20, f"{name} took {sent['seconds']:.1f} s"
            rates[name] = SIZE * 8 / sent["seconds"] / 1e6
            # The payload went through the master in the right direction ...
            grew = st1["master"]["stats"][mkey] - st0["master"]["stats"][mkey]
            assert grew >= SIZE, f"{name}: master {mkey} grew by only {grew}"
            # ... and via the primary; the standby (no carrier) carried nothing.
            pgrew = _stats(st1, "primary")[mkey] - _stats(st0, "primary")[mkey]
            assert pgrew >= SIZE, f"{name}: primary {mkey} grew by only {pgrew}"
            assert _stats(st1, "standby")["tx_bytes"] == 0
            pkey = mkey.replace("bytes", "packets")
            frames = st1["master"]["stats"][pkey] - st0["master"]["stats"][pkey]
            sizes[name] = grew / frames
            # The guest's TCP stack writes 64 KB GSO frames into the TAP; the
            # peer does too unless its offloads are off (wire_lab).
            if src_ns == "guest" or labname == "lab":
                assert sizes[name] > 16000, f"{name}: {sizes[name]:.0f} B/frame, no GSO"
            else:
                assert sizes[name] <= 1518, f"{name}: {sizes[name]:.0f} B/frame, not MTU-sized"
        st = n.status()
        for k in ("bad_vnet", "truncated", "tap_write", "tx_error", "no_slave"):
            assert st["drops"][k] == 0, (k, st["drops"])
        print(f"\n{labname}: " + ", ".join(f"{k} {v:.0f} Mbit/s, {sizes[k]:.0f} B/frame"
                                          for k, v in rates.items()))
    finally:
        n.stop()


# ------------------------------------------------------------ 2. VLAN (B-28)

VID = 42

# Send tagged frames with scapy: dst MAC, VLAN, count, ifname (run in a namespace).
SEND_TAGGED = r"""
import sys
from scapy.all import Dot1Q, Ether, IP, Raw, UDP, get_if_hwaddr, sendp
dst, vid, count, ifname, src_ip, dst_ip = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
src = get_if_hwaddr(ifname)
frames = [Ether(src=src, dst=dst) / Dot1Q(vlan=vid, prio=5) / IP(src=src_ip, dst=dst_ip)
          / UDP(sport=4242, dport=4242) / Raw(b"netfo-vlan %d " % i + b"v" * (i * 137))
          for i in range(count)]
sendp(frames, iface=ifname, inter=0.01, verbose=0)
"""


def _mac(lab, ns: str, ifname: str) -> str:
    return lab.run(ns, "cat", f"/sys/class/net/{ifname}/address").stdout.strip().lower()


def _tagged(frames, dst: str, marker: bytes = b"netfo-vlan ") -> list:
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw
    return [f for f in frames if f.haslayer(Dot1Q) and f.haslayer(Raw) and f[Ether].dst.lower() == dst
            and bytes(f[Raw].load).startswith(marker)]


def _untagged_markers(frames, marker: bytes = b"netfo-vlan ") -> list:
    from scapy.layers.l2 import Dot1Q
    return [f for f in frames if not f.haslayer(Dot1Q) and marker in bytes(f)]


def test_vlan_tags_cross_netfo_both_ways(lab, netfo):
    """802.1Q frames keep their tag through netfo, each exactly once.

    Peer -> guest: the far veth strips the tag (rx-vlan offload), so the
    packet socket on ens11 only has it in PACKET_AUXDATA, and netfo must
    re-insert it before writing to the TAP (B-28); a capture on the master
    then shows VLAN 42.  Guest -> peer: a tagged frame written to the master
    must leave via the primary with its tag.  Frames are made with scapy so
    this runs on kernels without 802.1Q devices (CONFIG_VLAN_8021Q unset).
    """
    count = 10
    peer_mac = _mac(lab, "peer", "eth0")
    cap = Capture(lab, "guest", "ens10")
    lab.run("peer", sys.executable, "-c", SEND_TAGGED, MAC, str(VID), str(count), "eth0",
            "10.42.0.1", "10.42.0.53", timeout=60)
    frames = cap.frames()
    assert _untagged_markers(frames) == [], "the tag was lost on the way to the master"
    got = _tagged(frames, MAC)
    assert len(got) == count, [f.summary() for f in frames]
    from scapy.layers.l2 import Dot1Q
    from scapy.packet import Raw
    assert [f[Dot1Q].vlan for f in got] == [VID] * count
    assert [f[Dot1Q].prio for f in got] == [5] * count
    assert sorted(int(bytes(f[Raw].load).split()[1]) for f in got) == list(range(count))
    assert all(len(f[Raw].load) == len(b"netfo-vlan %d " % i) + i * 137
               for i, f in enumerate(sorted(got, key=lambda f: int(bytes(f[Raw].load).split()[1]))))

    cap = Capture(lab, "peer", "eth0")
    lab.run("guest", sys.executable, "-c", SEND_TAGGED, peer_mac, str(VID), str(count), "ens10",
            "10.42.0.53", "10.42.0.1", timeout=60)
    frames = cap.frames()
    assert _untagged_markers(frames) == [], "the tag was lost on the way to the peer"
    got = _tagged(frames, peer_mac)
    assert len(got) == count, [f.summary() for f in frames]
    assert [f[Dot1Q].vlan for f in got] == [VID] * count
    st = netfo.status()
    assert st["drops"]["tap_write"] == 0 and st["drops"]["truncated"] == 0
    assert st["slaves"][0]["role"] == "primary" and st["slaves"][0]["stats"]["tx_packets"] >= count


# A tagged 3-segment TCP GSO frame with a partial checksum, written with a
# virtio-net header to a packet socket (what a VLAN device over a TSO NIC
# would hand the wire), with the tag inline.
SEND_VLAN_GSO = r"""
import socket, struct, sys
from netfo.kernel.packet import SOL_PACKET, PACKET_VNET_HDR
dst, ifname, vid, mss, segs = bytes.fromhex(sys.argv[1].replace(":", "")), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
s.bind((ifname, 0))
src = bytes.fromhex(open(f"/sys/class/net/{ifname}/address").read().strip().replace(":", ""))
payload = (b"netfo-vlan-gso " * (mss * segs // 15 + 1))[:mss * segs]
tcp = struct.pack("!HHIIBBHHH", 4243, 4243, 1000, 2000, 5 << 4, 0x18, 65535, 0, 0)
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0,
                 socket.inet_aton("10.42.0.1"), socket.inet_aton("10.42.0.53"))
frame = dst + src + struct.pack("!HHH", 0x8100, (5 << 13) | vid, 0x0800) + ip + tcp + payload
# flags NEEDS_CSUM, gso TCPV4, hdr_len, gso_size, csum_start (after the tag), csum_offset
vnet = struct.pack("=BBHHHH", 1, 1, 18 + 40, mss, 18 + 20, 16)
s.send(vnet + frame)
"""

# Read the master with PACKET_VNET_HDR + PACKET_AUXDATA until the GSO frame
# arrives; report its virtio-net header, its tag and a digest of the frame.
RECV_VNET = r"""
import hashlib, json, socket, struct, sys
from netfo.kernel.packet import SOL_PACKET, PACKET_VNET_HDR, PACKET_AUXDATA, ETH_P_ALL
from netfo.kernel.tap import VNET_HDR_LEN
ifname, marker = sys.argv[1], sys.argv[2].encode()
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
s.bind((ifname, ETH_P_ALL))
s.settimeout(10)
print("ready", flush=True)
while True:
    data, anc, flags, addr = s.recvmsg(70000, 256)
    if marker in data:
        break
aux = [struct.unpack("=IIIHHHH", d[:20]) for lvl, typ, d in anc
       if lvl == SOL_PACKET and typ == PACKET_AUXDATA]
flags_, gso_type, hdr_len, gso_size, csum_start, csum_offset = struct.unpack("=BBHHHH", data[:VNET_HDR_LEN])
print(json.dumps({"flags": flags_, "gso_type": gso_type, "gso_size": gso_size,
                  "csum_start": csum_start, "csum_offset": csum_offset,
                  "aux": aux[0] if aux else None, "len": len(data) - VNET_HDR_LEN,
                  "sha256": hashlib.sha256(data[VNET_HDR_LEN:]).hexdigest(), "pkttype": addr[2]}), flush=True)
"""


def test_vlan_gso_frame_keeps_offsets(lab, netfo):
    """A tagged GSO frame with a partial checksum crosses netfo intact (B-28, B-45).

    When netfo re-inserts the tag it moves the frame 4 bytes, so the vnet
    header's csum_start must move with it: otherwise the checksum would be
    filled in 4 bytes early (in the IP header) once the frame is segmented.
    On the master the kernel untags again, so a packet socket there must see
    csum_start == 14 + 20 (untagged Ethernet + IP), gso intact, tag 42 in
    the aux data, and the same bytes as sent minus the tag.
    """
    mss, segs = 1448, 3
    rx = lab.popen("guest", sys.executable, "-c", RECV_VNET, "ens10", "netfo-vlan-gso",
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert rx.stdout.readline().strip() == "ready", rx.stderr.read()
        lab.run("peer", sys.executable, "-c", SEND_VLAN_GSO, MAC, "eth0", str(VID), str(mss), str(segs))
        out, err = rx.communicate(timeout=15)
        assert rx.returncode == 0, err
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    got = json.loads(out)
    status, _, _, _, _, tci, _ = got["aux"]
    assert status & 0x10, f"no VLAN tag on the master: {got}"        # TP_STATUS_VLAN_VALID
    assert (tci & 0xfff, tci >> 13) == (VID, 5), got
    assert got["flags"] & 1 and got["csum_start"] == 14 + 20 and got["csum_offset"] == 16, got
    assert (got["gso_type"], got["gso_size"]) == (1, mss), got
    assert got["len"] == 14 + 40 + mss * segs, got
    # rebuild what the peer sent, untagged, and compare the bytes
    import socket as so
    import struct
    payload = (b"netfo-vlan-gso " * (mss * segs // 15 + 1))[:mss * segs]
    tcp = struct.pack("!HHIIBBHHH", 4243, 4243, 1000, 2000, 5 << 4, 0x18, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0,
                     so.inet_aton("10.42.0.1"), so.inet_aton("10.42.0.53"))
    peer_mac = bytes.fromhex(_mac(lab, "peer", "eth0").replace(":", ""))
    frame = bytes.fromhex(MAC.replace(":", "")) + peer_mac + b"\x08\x00" + ip + tcp + payload
    assert got["sha256"] == hashlib.sha256(frame).hexdigest(), "frame bytes changed on the way"


def test_vlan_device_on_master_pings(lab, netfo):
    """A VLAN device ens10.42 on the master talks to a tagged peer eth0.42."""
    p = lab.run("guest", "ip", "link", "add", "link", "ens10", "name", "ens10.42", "type", "vlan",
                "id", str(VID), check=False)
    if p.returncode and "Unknown device type" in p.stderr:
        pytest.skip("this kernel has no 802.1Q VLAN devices (CONFIG_VLAN_8021Q unset)")
    assert p.returncode == 0, p.stderr
    lab.run("guest", "ip", "addr", "add", "10.42.0.53/24", "dev", "ens10.42")
    lab.run("guest", "ip", "link", "set", "ens10.42", "up")
    lab.run("peer", "ip", "link", "add", "link", "eth0", "name", "eth0.42", "type", "vlan", "id", str(VID))
    lab.run("peer", "ip", "addr", "add", "10.42.0.1/24", "dev", "eth0.42")
    lab.run("peer", "ip", "link", "set", "eth0.42", "up")

    cap = Capture(lab, "guest", "ens10", "vlan 42 and icmp")
    r = ping(lab, "peer", "10.42.0.53", count=10)
    frames = cap.frames()
    assert (r.received, r.duplicates) == (10, 0)
    r = ping(lab, "guest", "10.42.0.1", count=10)
    assert (r.received, r.duplicates) == (10, 0)

    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Dot1Q, Ether
    received = [f for f in frames if f.haslayer(Dot1Q) and f[Ether].dst.lower() == MAC
                and f.haslayer(ICMP) and f[ICMP].type == 8]
    assert len(received) == 10, [f.summary() for f in frames]
    assert all(f[Dot1Q].vlan == VID and f[IP].src == "10.42.0.1" for f in received)
    assert netfo.status()["drops"]["tap_write"] == 0


# ------------------------------------------------------------ 3. multicast (B-14)

def maddrs(lab, ifname: str) -> set:
    """Link-layer multicast addresses of a guest interface (`ip maddr`)."""
    out = lab.run("guest", "ip", "maddr", "show", "dev", ifname).stdout
    return {line.split()[1].lower() for line in out.splitlines() if line.strip().startswith("link ")}


def wait_for(pred, timeout: float, what: str):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - t0


def test_multicast_list_follows_master(lab, netfo):
    group = "01:00:5e:01:02:03"
    assert group not in maddrs(lab, "ens11") | maddrs(lab, "ens10nsby")
    lab.run("guest", "ip", "maddr", "add", group, "dev", "ens10")
    assert group in maddrs(lab, "ens10")
    both = lambda: group in maddrs(lab, "ens11") and group in maddrs(lab, "ens10nsby")
    dt = wait_for(both, 1.0, f"{group} on ens11 and ens10nsby")
    lab.run("guest", "ip", "maddr", "del", group, "dev", "ens10")
    gone = lambda: group not in maddrs(lab, "ens11") | maddrs(lab, "ens10nsby")
    dt2 = wait_for(gone, 1.0, f"{group} removed from ens11 and ens10nsby")
    print(f"\nmaddr add reached slaves after {dt:.2f} s, del after {dt2:.2f} s")


def test_ipv4_multicast_reaches_guest(lab, netfo):
    group, port, count = "239.1.2.3", 5300, 20
    rx = lab.popen("guest", sys.executable, "-c", MCAST_RX, group, str(port), "ens10", "4",
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert rx.stdout.readline().strip() == "joined", rx.stderr.read()
        # The kernel's IGMP join put the group's MAC on the master; netfo
        # copies it to the slaves.
        mac = "01:00:5e:01:02:03"
        wait_for(lambda: mac in maddrs(lab, "ens11"), 1.0, f"{mac} on ens11")
        lab.run("peer", sys.executable, "-c", MCAST_TX, group, str(port), PEER_IP4, str(count))
        out, err = rx.communicate(timeout=15)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    seqs = json.loads(out)
    assert sorted(seqs) == list(range(count)), seqs     # all, each exactly once


def test_ipv6_neighbour_discovery(lab, netfo):
    """NS go to solicited-node groups (33:33:ff:..): both directions resolve."""
    # GUEST_IP6's solicited-node group, joined by the master's IPv6 stack
    assert "33:33:ff:00:00:53" in maddrs(lab, "ens11") & maddrs(lab, "ens10nsby")
    for ns, dev in (("guest", "ens10"), ("peer", "eth0")):
        lab.run(ns, "ip", "neigh", "flush", "dev", dev)
    cap = Capture(lab, "peer", "eth0", "icmp6")
    r = ping(lab, "guest", PEER_IP6, count=3)
    assert (r.received, r.duplicates) == (3, 0)
    for ns, dev in (("guest", "ens10"), ("peer", "eth0")):
        lab.run(ns, "ip", "neigh", "flush", "dev", dev)
    r = ping(lab, "peer", GUEST_IP6, count=3)
    assert (r.received, r.duplicates) == (3, 0)
    frames = cap.frames()

    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS
    from scapy.layers.l2 import Ether
    # the guest's NS for the peer, sent to the peer's solicited-node group
    assert any(f.haslayer(ICMPv6ND_NS) and f[ICMPv6ND_NS].tgt == PEER_IP6
               and f[Ether].dst == "33:33:ff:00:00:01" for f in frames)
    # the peer's NS for the guest, and the guest's answer
    assert any(f.haslayer(ICMPv6ND_NS) and f[ICMPv6ND_NS].tgt == GUEST_IP6
               and f[Ether].dst == "33:33:ff:00:00:53" for f in frames)
    assert any(f.haslayer(ICMPv6ND_NA) and f[ICMPv6ND_NA].tgt == GUEST_IP6 for f in frames)


# ------------------------------------------------------------ 4. rx policies

def arp_requests_for_guest(frames) -> list:
    from scapy.layers.l2 import ARP
    return [f for f in frames if f.haslayer(ARP) and f[ARP].op == 1 and f[ARP].pdst == GUEST_IP4
            and f[ARP].psrc == PEER_IP4]


@pytest.mark.parametrize("policy", ["active", "kernel", "all"])
def test_rx_policy_with_both_slaves_up(lab, policy):
    """With both slaves carrying, the peer's broadcasts reach both of them.

    active (default): only the transmitting slave (the primary) delivers;
    what the standby receives is dropped and counted as rx_policy.
    kernel: net_failover's rule (B-26), standby frames are dropped while a
    primary is enslaved, whatever its state; here the same as active.
    all: both deliver, so every broadcast reaches the master twice; unicast
    to the guest's MAC is not duplicated because the bridge learned the MAC
    on the VF port (the guest transmits via the primary) and does not
    flood it.
    """
    args = () if policy == "active" else ("--rx-policy", policy)
    lab.link("virtio", "up")
    n = Netfo(lab, *args).start()
    try:
        n.wait(lambda st: all(s["carrier"] for s in st["slaves"]) and len(st["slaves"]) == 2,
               what="both slaves with carrier")
        assert n.status()["rx_policy"] == policy
        # The guest talks first so the bridge learns its MAC on the VF port.
        r = ping(lab, "guest", PEER_IP4, count=3)
        assert r.received == 3
        lab.run("peer", "ip", "neigh", "flush", "dev", "eth0")   # next: a broadcast ARP
        st0 = n.status()
        cap = Capture(lab, "guest", "ens10", "arp or icmp")
        r = ping(lab, "peer", GUEST_IP4, count=20)
        frames = cap.frames()
        st1 = n.status()
        assert (r.received, r.duplicates) == (20, 0), r
        arps = arp_requests_for_guest(frames)
        sby0, sby1 = _stats(st0, "standby"), _stats(st1, "standby")
        assert sby1["rx_packets"] > sby0["rx_packets"], "the standby received nothing"
        if policy in ("active", "kernel"):
            assert len(arps) == 1, f"{len(arps)} copies of the peer's ARP request reached ens10"
            assert st1["drops"]["rx_policy"] > st0["drops"]["rx_policy"]
            assert sby1["rx_dropped"] > sby0["rx_dropped"]
        else:
            # The one broadcast ARP request arrives via both slaves: the
            # guest sees it twice (and answers twice; harmless for ARP).
            assert len(arps) == 2, f"{len(arps)} copies of the peer's ARP request reached ens10"
            assert st1["drops"]["rx_policy"] == 0
    finally:
        n.stop()
