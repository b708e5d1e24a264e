"""Checksum offload through netfo: what reaches the wire is right.

netfo passes virtio-net headers through, so a partially checksummed frame
from the guest carries csum_start/csum_offset to the slave; when the slave
cannot offload (tx checksumming off, like a VF without it) the kernel
completes the checksum in software at exactly those offsets. A wrong offset
shows up as a bad checksum on the wire.
"""
import time

from netfo.lab import GUEST_IP4, PEER_IP4

from support.traffic import Capture, Stream, ping


def checksums_ok(frames, proto):
    from scapy.layers.inet import ICMP, IP, UDP
    layer = {"udp": UDP, "icmp": ICMP}[proto]
    checked = 0
    for f in frames:
        if IP in f and layer in f:
            got = f[layer].chksum
            f2 = f[IP].copy()
            del f2[layer].chksum
            assert got == type(f2)(bytes(f2))[layer].chksum, f.summary()
            checked += 1
    return checked


def test_guest_checksums_are_completed_right_on_a_slave_without_offload(lab, netfo):
    lab.run("guest", "ethtool", "-K", "ens11", "tx", "off")     # software fallback
    cap = Capture(lab, "peer", "eth0", f"src host {GUEST_IP4} and (udp or icmp)", inbound=True)
    Stream(lab, "guest", "peer", PEER_IP4, 5010, 200, 0.5).result()
    assert ping(lab, "guest", PEER_IP4, count=5, extra=("-s", "1000")).duplicates == 0
    frames = cap.frames()
    assert checksums_ok(frames, "udp") >= 90
    assert checksums_ok(frames, "icmp") >= 5


def test_network_checksums_reach_the_guest_right(wire_lab):
    from support.harness import Netfo
    n = Netfo(wire_lab).start()
    try:
        cap = Capture(wire_lab, "guest", "ens10", f"src host {PEER_IP4} and (udp or icmp)")
        Stream(wire_lab, "peer", "guest", GUEST_IP4, 5011, 200, 0.5).result()
        assert ping(wire_lab, "peer", GUEST_IP4, count=5, extra=("-s", "1000")).duplicates == 0
        frames = cap.frames()
        assert checksums_ok(frames, "udp") >= 90
        assert checksums_ok(frames, "icmp") >= 5
    finally:
        n.stop()


def test_frame_too_big_for_the_slave_is_dropped_and_counted(lab, netfo):
    # B-37: a slave's MTU changed behind the master's back is not followed;
    # full-size frames without GSO then cannot go out and must be counted.
    lab.run("guest", "ip", "link", "set", "ens11", "mtu", "1400")
    time.sleep(0.3)
    before = netfo.status()
    r = ping(lab, "guest", PEER_IP4, count=5, extra=("-M", "do", "-s", "1450"))
    assert r.received == 0
    after = netfo.status()
    assert after["drops"]["tx_error"] - before["drops"]["tx_error"] >= 5
    assert after["master"]["stats"]["tx_dropped"] - before["master"]["stats"]["tx_dropped"] >= 5
    assert netfo.slave("primary")["stats"]["tx_dropped"] >= 5
    assert ping(lab, "guest", PEER_IP4, count=3, extra=("-s", "1000")).received == 3
