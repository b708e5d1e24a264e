"""Malformed, odd and oversize frames on both sides of a running master:
every frame is forwarded or counted in a drop reason, the loop stays alive,
no frame crosses from one slave to the other; a VF with BIG TCP / HW-GRO
(gro_max_size above 64 KB) is capped while enslaved and carries TCP."""
import json
import os
import subprocess
import sys
import time

from netfo.lab import GUEST_IP6, MAC, PEER_IP4, PEER_IP6

from support.harness import Netfo
from support.traffic import Capture, ping

HERE = os.path.dirname(os.path.abspath(__file__))
FUZZ = os.path.join(os.path.dirname(HERE), "support", "fuzzframes.py")
FROM_PEER = "02:00:00:fa:ce:02"         # the source MAC of the frames each side injects
FROM_GUEST = "02:00:00:fa:ce:01"
DROPS_TX = ("no_slave", "tap_read", "tx_nobufs", "tx_error")
DROPS_RX = ("rx_policy", "otherhost", "truncated", "bad_vnet", "tap_write", "outgoing")


def inject(lab, ns, ifname, dst, src, ip6, rounds, seed):
    p = lab.run(ns, sys.executable, FUZZ, ifname, dst, src, ip6, str(rounds), str(seed),
                timeout=120)
    return json.loads(p.stdout.strip().splitlines()[-1])


def from_mac(frames, mac):
    from scapy.layers.l2 import Ether
    return sum(1 for f in frames if Ether in f and f[Ether].src == mac)


def settled(netfo, timeout=5.0):
    """The status once the counters add up (the loop between batches)."""
    deadline = time.monotonic() + timeout
    while True:
        st = netfo.status()
        m = st["master"]["stats"]
        ok = (m["tx_received"] == m["tx_packets"] + m["tx_dropped"]
              and m["rx_received"] == m["rx_packets"] + m["rx_dropped"])
        if ok or time.monotonic() > deadline:
            return st, ok


def test_fuzzed_frames_both_sides_are_forwarded_or_counted(lab, netfo):
    lab.link("virtio", "up")                    # both slaves receive from the bridge
    netfo.wait(lambda s: s["active"] == "primary" and len(s["slaves"]) == 2
               and all(x["ready"] for x in s["slaves"]), what="both slaves ready")
    before = netfo.status()["master"]["stats"]
    caps = {port: Capture(lab, "src", port, inbound=True) for port in ("enp66s0f0", "tap01")}
    # Peer side, through the bridge (to the guest's MAC, to others, broadcast).
    peer = inject(lab, "peer", "eth0", MAC, FROM_PEER, GUEST_IP6, 120, 1)
    # Guest side, through the master: what the loop reads from the TAP.
    guest = inject(lab, "guest", "ens10", "02:00:00:00:00:01", FROM_GUEST, PEER_IP6, 120, 2)
    peer2 = inject(lab, "peer", "eth0", "ff:ff:ff:ff:ff:ff", FROM_PEER, GUEST_IP6, 40, 3)
    assert peer["sent"] > 1000 and guest["sent"] > 1000, (peer, guest)
    time.sleep(0.5)
    got = {port: cap.frames() for port, cap in caps.items()}
    # No frame crosses slave to slave: nothing the peer sent comes back out
    # of either slave; the guest's frames leave by the transmitting one only.
    assert from_mac(got["enp66s0f0"], FROM_PEER) == 0
    assert from_mac(got["tap01"], FROM_PEER) == 0
    assert from_mac(got["tap01"], FROM_GUEST) == 0
    assert from_mac(got["enp66s0f0"], FROM_GUEST) > 0
    # The loop is alive and forwards; the counters add up, per direction.
    assert netfo.proc.poll() is None
    assert ping(lab, "guest", PEER_IP4, count=5).received == 5
    assert ping(lab, "peer", GUEST_IP6, count=5).received == 5
    st, ok = settled(netfo)
    m, d = st["master"]["stats"], st["drops"]
    assert ok, (m, d)
    assert m["tx_dropped"] == sum(d[k] for k in DROPS_TX), (m, d)
    assert m["rx_dropped"] == sum(d[k] for k in DROPS_RX), (m, d)
    assert m["tx_received"] - before["tx_received"] >= guest["sent"] // 2, (m, guest)
    assert m["rx_received"] - before["rx_received"] >= peer["sent"] + peer2["sent"], (m, peer)
    assert st["active"] == st["loop_active"] == "primary"


def link_json(lab, ns, dev):
    return json.loads(lab.run(ns, "ip", "-d", "-j", "link", "show", "dev", dev).stdout)[0]


def tcp_to_guest(lab, seconds=2):
    """iperf3 over IPv6, peer -> guest (the guest's VF aggregates with GRO)."""
    srv = lab.popen("guest", "iperf3", "-s", "-1", "-B", GUEST_IP6,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        p = lab.run("peer", "iperf3", "-6", "-c", GUEST_IP6, "-t", str(seconds), "-J",
                    check=False, timeout=seconds + 30)
        out = json.loads(p.stdout) if p.stdout.strip() else {}
        return out.get("end", {}).get("sum_received", {}).get("bytes", 0)
    finally:
        srv.kill()
        srv.wait()


def test_vf_with_big_gro_is_capped_while_enslaved_and_restored(lab):
    big = 196608
    lab.run("guest", "ethtool", "-K", "ens11", "gro", "on")
    lab.run("guest", "ip", "link", "set", "dev", "ens11", "gro_max_size", str(big),
            "gso_max_size", str(big))
    # The wire brings MTU-sized segments (the peer segments them itself);
    # the VF aggregates them with GRO, as HW-GRO would, up to gro_max_size.
    # (veth hands the VF's GRO only frames its peer did not build with TSO).
    lab.run("peer", "ethtool", "-K", "eth0", "tso", "off", "gso", "off")
    lab.run("src", "ethtool", "-K", "enp66s0f0", "tso", "off")
    n = Netfo(lab).start(ready=lambda s: s["active"] == "primary", what="primary transmits")
    try:
        vf = link_json(lab, "guest", "ens11")
        assert (vf["gro_max_size"], vf["gso_max_size"]) == (65536, 65536), vf
        got = tcp_to_guest(lab)
        st = n.status()
        assert st["drops"]["truncated"] == 0, st["drops"]
        assert got > 50 << 20, got                  # TCP flows, nothing dropped as truncated
    finally:
        n.stop()
    vf = link_json(lab, "guest", "ens11")
    assert (vf["gro_max_size"], vf["gso_max_size"]) == (big, big), vf
