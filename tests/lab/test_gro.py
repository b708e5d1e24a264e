"""--gro on in the namespace lab: 64 MB network -> guest arrive byte-exact
over IPv4 and IPv6, merged (rx_coalesced grows, the guest's stack sees
fewer, larger frames), also when the wire loses and reorders segments.

sch_netem is not in every kernel (not in this lab's): loss and reordering
are made on the hypervisor's bridge instead, with nftables (numgen random:
drop 1 %, send 25 % through a slow HTB class on the VF's port so the rest
overtake them).
"""
from __future__ import annotations

import tempfile

import pytest

from netfo.lab import GUEST_IP4, GUEST_IP6
from netfo.lab.topology import PF, VF_IF

from support.harness import Netfo, unique_prefix
from support.traffic import Capture
from conftest import forget_reused_inodes
from test_traffic import SIZE, payload, tcp_transfer  # noqa: F401 (a fixture)

PORT = 5203


def _transfer(lab, n, path, digest, dst_ip, port):
    st0 = n.status()
    got, sent = tcp_transfer(lab, "peer", "guest", dst_ip, path, port)
    st1 = n.status()
    assert sent["bytes"] == SIZE and got["bytes"] == SIZE
    assert got["sha256"] == digest, f"{dst_ip}: data corrupted on the way"
    m0, m1 = st0["master"]["stats"], st1["master"]["stats"]
    d = {k: m1[k] - m0[k] for k in ("rx_packets", "rx_bytes", "rx_coalesced")}
    print(f"\n{dst_ip}: {d}, {SIZE * 8 / sent['seconds'] / 1e6:.0f} Mbit/s")
    return d, st1


def _accounted(st):
    m = st["master"]["stats"]
    assert m["rx_received"] == m["rx_packets"] + m["rx_dropped"], m
    for k in ("bad_vnet", "truncated", "tap_write"):
        assert st["drops"][k] == 0, (k, st["drops"])


@pytest.mark.parametrize("dst_ip", [GUEST_IP4, GUEST_IP6])
def test_wire_like_segments_are_merged_and_intact(wire_lab, payload, dst_ip):
    path, digest = payload
    n = Netfo(wire_lab, "--gro", "on").start()
    try:
        # What the guest's stack is handed: GSO frames well over the MTU.
        cap = Capture(wire_lab, "guest", "ens10", f"tcp and dst port {PORT} and greater 3000")
        d, st = _transfer(wire_lab, n, path, digest, dst_ip, PORT)
        big = cap.frames()
        # rx_packets counts the segments received, merged or not; most of
        # them went up merged into an earlier one.
        assert d["rx_packets"] >= SIZE // 1500
        assert d["rx_coalesced"] > d["rx_packets"] // 4, d
        assert d["rx_bytes"] >= SIZE
        assert len(big) > 0, "no merged frame reached the master"
        _accounted(st)
    finally:
        n.stop()


def test_gro_off_merges_nothing(wire_lab, payload):
    path, digest = payload
    n = Netfo(wire_lab, "--gro", "off").start()
    try:
        d, st = _transfer(wire_lab, n, path, digest, GUEST_IP4, PORT)
        assert d["rx_coalesced"] == 0
        _accounted(st)
    finally:
        n.stop()


LOSSY = f"""
table bridge hg_lossy {{
    counter dropped {{ }}
    counter slowed {{ }}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        ether type {{ ip, ip6 }} meta l4proto tcp tcp dport {PORT} numgen random mod 100 < 1 counter name dropped drop
        ether type {{ ip, ip6 }} meta l4proto tcp tcp dport {PORT} numgen random mod 4 == 0 counter name slowed meta priority set 1:20
    }}
}}
"""


def _counter(lab, name: str) -> int:
    out = lab.run("src", "nft", "list", "counter", "bridge", "hg_lossy", name).stdout
    return int(out.split("packets")[1].split()[0])


def test_lossy_reordered_stream_is_intact(wire_lab, payload):
    path, digest = payload
    lab = wire_lab
    # The VF's port on the hypervisor bridge: 1:10 fast, 1:20 slow, so the
    # frames nft sends to 1:20 arrive after later ones.
    lab.run("src", "tc", "qdisc", "add", "dev", PF, "root", "handle", "1:", "htb", "default", "10")
    lab.run("src", "tc", "class", "add", "dev", PF, "parent", "1:", "classid", "1:10", "htb",
            "rate", "20gbit")
    lab.run("src", "tc", "class", "add", "dev", PF, "parent", "1:", "classid", "1:20", "htb",
            "rate", "300mbit", "ceil", "300mbit")
    with tempfile.NamedTemporaryFile("w", prefix="netfo-hg-", suffix=".nft") as rules:
        rules.write(LOSSY)
        rules.flush()
        lab.run("src", "nft", "-f", rules.name)
    n = Netfo(lab, "--gro", "on").start()
    try:
        for dst_ip in (GUEST_IP4, GUEST_IP6):
            d, st = _transfer(lab, n, path, digest, dst_ip, PORT)
            assert d["rx_coalesced"] > 0, d
            _accounted(st)
        print("nft:", _counter(lab, "dropped"), "dropped,", _counter(lab, "slowed"), "slowed")
        assert _counter(lab, "dropped") > 0 and _counter(lab, "slowed") > 0
    finally:
        n.stop()


@pytest.fixture
def vf_gro_lab():
    from netfo.lab import Lab
    lab = Lab(unique_prefix(), wire_like=True, vf_gro=True, log=lambda *_: None)
    with lab:
        forget_reused_inodes(lab)
        yield lab


@pytest.mark.parametrize("gro", ["off", "on"])
def test_vf_gro_lab_hands_over_merged_frames_left_alone(vf_gro_lab, payload, gro):
    """The bench's wire-gro mode: the VF's GRO merges before AF_PACKET, so
    netfo reads GSO frames, which its own GRO passes through untouched: it
    merges at most the segments the VF handed over unmerged (how many of
    those there are depends on the machine's load, so they are counted)."""
    path, digest = payload
    n = Netfo(vf_gro_lab, "--gro", gro).start()
    try:
        st0 = n.status()["slaves"]
        single = Capture(vf_gro_lab, "guest", VF_IF, f"tcp and dst port {PORT} and less 1600",
                         inbound=True)
        d, st = _transfer(vf_gro_lab, n, path, digest, GUEST_IP4, PORT)
        unmerged = len(single.frames())
        print(f"{unmerged} segments came unmerged from the VF")
        prim = next(s for s in st["slaves"] if s["role"] == "primary")["stats"]
        prim0 = next(s for s in st0 if s["role"] == "primary")["stats"]
        per_frame = (prim["rx_bytes"] - prim0["rx_bytes"]) / (prim["rx_packets"] - prim0["rx_packets"])
        assert per_frame > 3000, f"the VF did not merge: {per_frame:.0f} B/frame"
        assert d["rx_coalesced"] <= unmerged, (d, unmerged)
        _accounted(st)
    finally:
        n.stop()
