"""The loop's userspace GRO (--gro, netfo/gro.pxd) on scapy-built segments:
what it merges comes out as one GSO frame the kernel accepts (virtio-net
header, lengths, checksums), and everything the kernel's GRO would not merge
comes out as it went in, in order."""
import struct
from socket import AF_INET6, inet_aton, inet_pton

import pytest

try:
    from netfo import _fastpath
except ImportError as e:        # pragma: no cover
    pytest.skip(f"netfo._fastpath is not built ({e})", allow_module_level=True)

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import checksum

F_NEEDS_CSUM, F_DATA_VALID = 1, 2
GSO_NONE, GSO_TCPV4, GSO_TCPV6 = 0, 1, 4
MSS = 1448
DATA = bytes(range(251)) * 2400
TS = [("NOP", None), ("NOP", None), ("Timestamp", (1000, 2000))]


def vnet(flags=0, gso_type=GSO_NONE, hdr_len=0, gso_size=0, start=0, off=0):
    return struct.pack("=BBHHHH", flags, gso_type, hdr_len, gso_size, start, off)


def seg(i, v6=False, seq0=1000, size=None, flags="A", opts=TS, ipid=None, vflags=0,
        sport=40000, ttl=64, tos=0, df=True, bad=False, mss=MSS, **tcp):
    """Segment i of a stream (payload DATA[seq - seq0 ...]) as the slave gives it."""
    size = mss if size is None else size
    seq = seq0 + i * mss
    ip = (IPv6(src="fd00::2", dst="fd00::1", hlim=ttl, tc=tos) if v6 else
          IP(src="10.0.0.2", dst="10.0.0.1", id=100 + i if ipid is None else ipid, ttl=ttl,
             tos=tos, flags="DF" if df else 0))
    tcp = {"ack": 77, "window": 500, **tcp}
    p = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / ip / TCP(
        sport=sport, dport=5201, seq=seq, flags=flags, options=opts, **tcp) \
        / Raw(DATA[i * mss:i * mss + size])
    b = bytearray(bytes(p))
    if bad:
        b[-1] ^= 0xFF               # payload corrupted after the checksum
    return vnet(vflags) + bytes(b)


def parse(frame):
    h = struct.unpack("=BBHHHH", frame[:10])
    return h, Ether(frame[10:])


def payload(frames):
    return b"".join(bytes(Ether(f[10:])[TCP].payload) for f in frames)


def tcp_ok(pkt):
    """A CHECKSUM_PARTIAL frame as tcp_gro_complete leaves it: the field holds
    the pseudo-header sum (with the merged length), and completing the sum
    from csum_start gives a checksum the receiver verifies."""
    t = bytes(pkt[TCP])
    if IPv6 in pkt:
        ph = inet_pton(AF_INET6, pkt[IPv6].src) + inet_pton(AF_INET6, pkt[IPv6].dst) \
            + struct.pack("!I3xB", len(t), 6)
    else:
        ph = inet_aton(pkt[IP].src) + inet_aton(pkt[IP].dst) + struct.pack("!xBH", 6, len(t))
    partial = struct.unpack("!H", t[16:18])[0]
    if partial != (~checksum(ph) & 0xFFFF):
        return False
    filled = t[:16] + struct.pack("!H", checksum(t)) + t[18:]
    return checksum(ph + filled) == 0


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("vflags", [0, F_DATA_VALID, F_NEEDS_CSUM])
def test_consecutive_segments_become_one_gso_frame(v6, vflags):
    ins = [seg(i, v6=v6, vflags=vflags) for i in range(5)]
    out, merged = _fastpath.gro_coalesce(ins)
    assert merged == 4 and len(out) == 1
    (flags, gso_type, hdr_len, gso_size, start, off), pkt = parse(out[0])
    thl = 20 + 12
    l3 = 40 if v6 else 20
    assert flags == F_NEEDS_CSUM
    assert gso_type == (GSO_TCPV6 if v6 else GSO_TCPV4)
    assert gso_size == MSS
    assert hdr_len == 14 + l3 + thl and start == 14 + l3 and off == 16
    assert bytes(pkt[TCP].payload) == DATA[:5 * MSS]
    assert pkt[TCP].seq == 1000 and pkt[TCP].ack == 77 and pkt[TCP].flags == "A"
    assert pkt[TCP].options == [("NOP", None), ("NOP", None), ("Timestamp", (1000, 2000))]
    if v6:
        assert pkt[IPv6].plen == thl + 5 * MSS
    else:
        assert pkt[IP].len == l3 + thl + 5 * MSS and pkt[IP].id == 100
        raw = bytes(pkt[IP])[:20]
        assert checksum(raw) == 0, "IPv4 header checksum"
    assert tcp_ok(pkt)
    assert len(out[0]) == 10 + 14 + l3 + thl + 5 * MSS


def test_psh_ends_the_merge_after_taking_the_segment():
    ins = [seg(0), seg(1), seg(2, flags="PA"), seg(3), seg(4)]
    out, merged = _fastpath.gro_coalesce(ins)
    assert merged == 3 and len(out) == 2
    assert parse(out[0])[1][TCP].flags == "PA"
    assert payload(out) == DATA[:5 * MSS]


def test_short_segment_ends_the_merge():
    ins = [seg(0), seg(1, size=700), seg(2)]
    # seg(2) does not follow seg(1)'s 700 bytes: a new head (gap)
    out, merged = _fastpath.gro_coalesce(ins)
    assert merged == 1 and len(out) == 2
    assert parse(out[0])[0][3] == MSS


def test_out_of_order_and_retransmission_are_not_merged():
    ins = [seg(0), seg(2), seg(1), seg(3), seg(1)]
    out, merged = _fastpath.gro_coalesce(ins)
    assert merged == 0 and out == ins


def test_reordered_stream_keeps_its_order_and_bytes():
    ins = [seg(0), seg(1), seg(3), seg(4), seg(2), seg(5)]
    out, merged = _fastpath.gro_coalesce(ins)
    assert [parse(f)[1][TCP].seq for f in out] == [1000 + k * MSS for k in (0, 3, 2, 5)]
    assert merged == 2
    assert payload(out) == DATA[:2 * MSS] + DATA[3 * MSS:5 * MSS] + DATA[2 * MSS:3 * MSS] \
        + DATA[5 * MSS:6 * MSS]


@pytest.mark.parametrize("change", [
    dict(flags="SA"), dict(flags="RA"), dict(flags="UA", urgptr=1), dict(flags="CA"),
    dict(flags="EA"), dict(flags="FA"),
    dict(opts=[("NOP", None), ("NOP", None), ("Timestamp", (1001, 2000))]),
    dict(opts=[]), dict(ttl=63), dict(tos=4), dict(df=False), dict(ipid=5),
    dict(window=501), dict(ack=78), dict(sport=40001), dict(size=MSS + 1), dict(bad=True),
])
def test_what_the_kernel_would_not_merge_stays_apart(change):
    ins = [seg(0), seg(1, **change)]
    out, merged = _fastpath.gro_coalesce(ins)
    if change == dict(flags="FA"):
        # FIN is taken like PSH and ends the merge (tcp_gro_receive)
        assert merged == 1 and parse(out[0])[1][TCP].flags == "FA"
        return
    assert merged == 0 and out == ins


def test_first_segment_with_a_bad_checksum_is_not_merged():
    ins = [seg(0, bad=True), seg(1), seg(2)]
    out, merged = _fastpath.gro_coalesce(ins)
    assert merged == 1 and out[0] == ins[0] and len(out) == 2


def test_ip_options_and_fragments_are_left_alone():
    a = Ether() / IP(src="10.0.0.2", dst="10.0.0.1", options=[b"\x01\x01\x01\x00"]) \
        / TCP(sport=1, dport=2, flags="A", seq=1) / Raw(b"x" * 100)
    b = Ether() / IP(src="10.0.0.2", dst="10.0.0.1", options=[b"\x01\x01\x01\x00"]) \
        / TCP(sport=1, dport=2, flags="A", seq=101) / Raw(b"x" * 100)
    ins = [vnet() + bytes(a), vnet() + bytes(b)]
    assert _fastpath.gro_coalesce(ins) == (ins, 0)
    fr = [vnet() + bytes(Ether() / IP(src="10.0.0.2", dst="10.0.0.1", flags="MF", id=9)
                         / TCP(sport=1, dport=2, flags="A", seq=1 + 100 * i) / Raw(b"y" * 100))
          for i in range(2)]
    assert _fastpath.gro_coalesce(fr) == (fr, 0)


def test_interleaved_flows_each_merge_and_other_frames_pass():
    udp = vnet() + bytes(Ether() / IP() / UDP() / Raw(b"u" * 50))
    tagged = vnet() + bytes(Ether() / Dot1Q(vlan=5) / IP(src="10.0.0.2", dst="10.0.0.1")
                            / TCP(flags="A") / Raw(b"v" * 100))
    ins = [seg(0), seg(0, sport=1), udp, seg(1), seg(1, sport=1), tagged, seg(2), seg(2, v6=True),
           seg(3, v6=True)]
    out, merged = _fastpath.gro_coalesce(ins)
    assert merged == 4
    assert out[2] == udp and out[3] == tagged and len(out) == 5
    assert bytes(parse(out[0])[1][TCP].payload) == DATA[:3 * MSS]
    assert bytes(parse(out[1])[1][TCP].payload) == DATA[:2 * MSS]
    assert parse(out[4])[1][TCP].seq == 1000 + 2 * MSS


def test_already_gso_frames_and_pure_acks_are_left_alone():
    big = vnet(F_NEEDS_CSUM, GSO_TCPV4, 66, MSS, 34, 16) + seg(0, size=3 * MSS)[10:]
    ack = seg(3, size=0)
    ins = [big, seg(3), ack, seg(4)]
    out, merged = _fastpath.gro_coalesce(ins)
    assert out[0] == big and out[2] == ack and merged == 0


def test_merge_stops_at_64_kb():
    jumbo = 8948                    # 9000-byte MTU: 7 segments fit in 64 KB
    ins = [seg(i, mss=jumbo) for i in range(16)]
    out, merged = _fastpath.gro_coalesce(ins)
    sizes = [len(parse(f)[1][TCP].payload) for f in out]
    assert sizes == [7 * jumbo, 7 * jumbo, 2 * jumbo] and merged == 13
    assert payload(out) == DATA[:16 * jumbo]
    for f in out:
        assert parse(f)[1][IP].len == 20 + 32 + len(parse(f)[1][TCP].payload)
        assert tcp_ok(parse(f)[1])
