"""Send crafted and fuzzed frames out of one interface (run inside a lab
namespace): runts, oversize, VLAN and double-tagged (802.1ad), bad
checksums, scapy-fuzzed headers, and GSO frames with odd gso_size/hdr_len
through a PACKET_VNET_HDR socket.  Every frame carries MARK so captures can
tell them from other traffic.  Prints {"sent": n, "refused": n} as JSON
(the kernel refuses some at send: that is its check, not netfo's).

    python fuzzframes.py IFNAME DST_MAC SRC_MAC DST_IP6 COUNT SEED
"""
import json
import random
import socket
import struct
import sys

from scapy.all import Dot1AD, Dot1Q, Ether, ICMP, IP, IPv6, Raw, TCP, UDP, fuzz

MARK = b"NETFOFUZZ"
SOL_PACKET, PACKET_VNET_HDR = 263, 15
GSO_TCPV4, GSO_UDP, GSO_TCPV6 = 1, 3, 4
NEEDS_CSUM = 1


def frames(dst, src, ip6, rng):
    base = Ether(dst=dst, src=src)
    yield "runt", bytes(base / Raw(MARK))[:rng.randint(14, 59)]             # < 60 bytes
    n = rng.choice((1501, 1504, 1518, 1600, 4000, 9000))
    yield "oversize", bytes(base / IP(dst="192.168.12.53") / UDP() / Raw(MARK + bytes(n)))
    yield "vlan", bytes(base / Dot1Q(vlan=rng.randint(0, 4095)) / IP() / UDP() / Raw(MARK))
    yield "qinq", bytes(base / Dot1AD(vlan=rng.randint(1, 4094)) / Dot1Q(vlan=rng.randint(1, 4094))
                        / IPv6(dst=ip6) / UDP() / Raw(MARK))
    yield "badsum", bytes(base / IP(dst="192.168.12.53", chksum=rng.randint(0, 65535))
                          / UDP(chksum=rng.randint(1, 65535)) / Raw(MARK))
    yield "badsum", bytes(base / IPv6(dst=ip6) / TCP(chksum=rng.randint(0, 65535)) / Raw(MARK))
    yield "fuzz", bytes(base / fuzz(IP()) / Raw(MARK))
    yield "fuzz", bytes(base / fuzz(IPv6()) / Raw(MARK))
    yield "fuzz", bytes(fuzz(Ether(dst=dst)) / Raw(MARK))
    yield "fuzz", bytes(base / IP(dst="192.168.12.53") / fuzz(ICMP()) / Raw(MARK))
    yield "bcast", bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=src) / Raw(MARK + bytes(rng.randint(0, 1400))))


def gso_frames(dst, src, ip6, rng):
    """(vnet header, frame): TCP/UDP GSO frames with odd sizes."""
    base = Ether(dst=dst, src=src)
    for v6 in (False, True):
        l3 = IPv6(dst=ip6) if v6 else IP(dst="192.168.12.53")
        payload = MARK + bytes(rng.randint(100, 60000))
        f = bytes(base / l3 / TCP(dport=9, flags="A") / Raw(payload))
        gso_type = GSO_TCPV6 if v6 else GSO_TCPV4
        hdr_len = rng.choice((0, 1, 14, 54, 74, 200, 65535))
        gso_size = rng.choice((1, 7, 536, 1399, 1448, 9000, 65535))
        csum_start = 14 + (40 if v6 else 20)
        yield struct.pack("=BBHHHH", NEEDS_CSUM, gso_type, hdr_len, gso_size, csum_start, 16), f
    f = bytes(base / IP(dst="192.168.12.53") / UDP(dport=9) / Raw(MARK + bytes(rng.randint(10, 20000))))
    yield struct.pack("=BBHHHH", NEEDS_CSUM, GSO_UDP, rng.randint(0, 100),
                      rng.choice((1, 8, 1472)), 34, 6), f


def main():
    ifname, dst, src, ip6, count, seed = sys.argv[1:7]
    rng = random.Random(int(seed))
    plain = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    plain.bind((ifname, 0))
    vnet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    vnet.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    vnet.bind((ifname, 0))
    sent = refused = 0
    kinds = {}
    for _ in range(int(count)):
        todo = [(plain, b"", f, k) for k, f in frames(dst, src, ip6, rng)]
        todo += [(vnet, h, f, "gso") for h, f in gso_frames(dst, src, ip6, rng)]
        for sock, head, frame, kind in todo:
            try:
                sock.send(head + frame)
                sent += 1
                kinds[kind] = kinds.get(kind, 0) + 1
            except OSError:
                refused += 1
    print(json.dumps({"sent": sent, "refused": refused, "kinds": kinds}))


if __name__ == "__main__":
    main()
