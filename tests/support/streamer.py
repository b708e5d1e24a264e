"""Sequence-numbered UDP stream for lab tests (run inside a namespace).

    python streamer.py send DST PORT RATE SECONDS
    python streamer.py recv PORT SECONDS      -> JSON {"seqs": [...], "times": [...]}

Each datagram carries its sequence number, so the receiver can tell which
frames were lost and when the longest gap was.
"""
import json
import socket
import struct
import sys
import time


def send(dst: str, port: int, rate: float, seconds: float) -> None:
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    interval, seq = 1.0 / rate, 0
    start = time.monotonic()
    while True:
        due = start + seq * interval
        now = time.monotonic()
        if now - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        try:
            s.sendto(struct.pack("!I", seq) + b"x" * 60, (dst, port))
        except OSError:
            pass            # no route / no carrier for a moment: a lost frame
        seq += 1
    print(json.dumps({"sent": seq}))


def recv(port: int, seconds: float) -> None:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    # A burst after a delay (a switch, a restart) must not overflow the
    # receiver's own socket: that loss would be this tool's, not netfo's.
    s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)          # SO_RCVBUFFORCE
    s.bind(("::", port))
    s.settimeout(0.1)
    seqs, times = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = s.recv(2048)
        except socket.timeout:
            continue
        seqs.append(struct.unpack("!I", data[:4])[0])
        times.append(time.monotonic())
    print(json.dumps({"seqs": seqs, "times": times}))


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    else:
        recv(int(sys.argv[2]), float(sys.argv[3]))
