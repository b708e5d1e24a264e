"""A small UDP sender/receiver for the 64-byte frame test.

iperf3 -u -l 18 tops out near 150,000 packets/s here (one sendto per
packet plus its pacing logic), about what the forwarders under test do, so
it would measure itself.  This sends and receives in batches of 256 with
sendmmsg/recvmmsg (through ctypes: the stdlib has neither), leaving the
kernel and the forwarder as the bottleneck.  An 18-byte payload makes a
60-byte Ethernet frame: 64 bytes on the wire with the FCS.

    python3 -m bench.udpblast recv --port 5202 --seconds 5
    python3 -m bench.udpblast send --dst 192.168.12.1 --port 5202 --seconds 3

Both print one JSON line: {"packets": N, "seconds": S}; recv prints "ready"
first, once its socket is bound.
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import json
import socket
import struct
import sys
import time

BATCH = 256
PAYLOAD = 18
MSG_WAITFORONE = 0x10000


class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(IOVec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", MsgHdr), ("len", ctypes.c_uint)]


libc = ctypes.CDLL(None, use_errno=True)


def _batch(bufsize: int, shared: bool) -> tuple:
    """BATCH messages of one iovec each; shared: all point at one buffer."""
    n_bufs = 1 if shared else BATCH
    bufs = ctypes.create_string_buffer(bufsize * n_bufs)
    iovs = (IOVec * BATCH)()
    msgs = (MMsgHdr * BATCH)()
    for i in range(BATCH):
        iovs[i].base = ctypes.addressof(bufs) + (0 if shared else i * bufsize)
        iovs[i].len = bufsize
        msgs[i].hdr.iov = ctypes.pointer(iovs[i])
        msgs[i].hdr.iovlen = 1
    return bufs, iovs, msgs


def send(dst: str, port: int, seconds: float) -> dict:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((dst, port))
    bufs, iovs, msgs = _batch(PAYLOAD, shared=True)
    ctypes.memmove(bufs, struct.pack("!Q", 0x6e6574666f).ljust(PAYLOAD, b"\0"), PAYLOAD)
    sendmmsg, fd, sent = libc.sendmmsg, s.fileno(), 0
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        n = sendmmsg(fd, msgs, BATCH, 0)
        if n > 0:
            sent += n
        elif ctypes.get_errno() not in (errno.ECONNREFUSED, errno.ENOBUFS, errno.EAGAIN, errno.EINTR):
            raise OSError(ctypes.get_errno(), "sendmmsg")
    return {"packets": sent, "seconds": time.monotonic() - t0}


def recv(port: int, seconds: float, idle: float = 0.3) -> dict:
    """Count datagrams until `idle` s without any after the first, or `seconds`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, int(idle * 1e6)))
    bufs, iovs, msgs = _batch(64, shared=False)
    recvmmsg, fd, got = libc.recvmmsg, s.fileno(), 0
    print("ready", flush=True)
    first = last = None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, None)
        now = time.monotonic()
        if n > 0:
            got += n
            first = first or now
            last = now
        elif first is not None and now - last >= idle:
            break
    return {"packets": got, "seconds": (last - first) if first else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="64-byte UDP frames, batched")
    ap.add_argument("role", choices=("send", "recv"))
    ap.add_argument("--dst", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5202)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args(argv)
    out = send(a.dst, a.port, a.seconds) if a.role == "send" else recv(a.port, a.seconds)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
