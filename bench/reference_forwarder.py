"""The plain pure-Python forwarder netfo's Cython loop is measured against.

It does the data-path job of netfo for one master TAP and one slave, the
obvious way: epoll, then one read and one send per frame, with the
virtio-net header passed through unchanged (TAP IFF_VNET_HDR, slave
PACKET_VNET_HDR), so a 64 KB GSO frame is still one read and one write.
It is a yardstick, not a fallback: no failover, no VLAN re-tagging, no
receive policy.  Buffers are preallocated (recv_into/readv), so what it
costs is the interpreter's per-frame work, not allocation.

    python3 -m bench.reference_forwarder --tap ens10 --slave ens11

creates the TAP (carrier on; it vanishes when the process exits), opens the
slave, prints "ready" and forwards until SIGTERM/SIGINT.  Addresses, MAC and
silencing the slave are the caller's job (bench/paths.py does them).
"""
from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys

from netfo.kernel import packet, tap

BUFSZ = tap.BUFSZ   # vnet header + 64 KB GSO frame + Ethernet/VLAN headers
BURST = 64          # frames per wake-up before epoll again: fairness between sides


class Forwarder:
    """TAP fd <-> AF_PACKET slave fd; counters are plain attributes."""

    def __init__(self, tap_fd: int, slave_fd: int) -> None:
        self.tap_fd = tap_fd
        self.slave = socket.socket(fileno=slave_fd)
        self.to_slave = self.to_tap = self.dropped = 0

    def run(self) -> None:
        ep = select.epoll()
        ep.register(self.tap_fd, select.EPOLLIN)
        ep.register(self.slave.fileno(), select.EPOLLIN)
        buf = bytearray(BUFSZ)
        view = memoryview(buf)
        tap_fd, slave = self.tap_fd, self.slave
        readv, write = os.readv, os.write
        recv_into, send = slave.recv_into, slave.send
        while True:
            for fd, _ in ep.poll():
                if fd == tap_fd:
                    for _ in range(BURST):
                        try:
                            n = readv(tap_fd, (buf,))
                        except BlockingIOError:
                            break
                        try:
                            send(view[:n])
                            self.to_slave += 1
                        except OSError:         # ENOBUFS, ENETDOWN: lost
                            self.dropped += 1
                else:
                    for _ in range(BURST):
                        try:
                            n = recv_into(buf)
                        except BlockingIOError:
                            break
                        try:
                            write(tap_fd, view[:n])
                            self.to_tap += 1
                        except OSError:         # EIO while the TAP is down
                            self.dropped += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tap", default="ens10", help="TAP master to create")
    ap.add_argument("--slave", default="ens11", help="slave interface (the VF)")
    args = ap.parse_args(argv)
    # SIGTERM ends the loop like Ctrl-C: the TAP goes with the process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    tap_fd = tap.open_tap(args.tap)
    tap.set_carrier(tap_fd, True)
    fwd = Forwarder(tap_fd, packet.open_slave(args.slave))
    print("ready", flush=True)
    try:
        fwd.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
