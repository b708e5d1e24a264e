"""How fast a re-plugged VF carries the guest's frames: one timed re-plug.

A VF that comes back (`virsh attach-device`) is outage until netfo has
enslaved it, brought it up and the datapath transmits through it once it
has carrier.  Three clocks are read, all CLOCK_MONOTONIC (one for every
namespace): a netlink monitor in the guest (the VF's RTM_NEWLINK: it
appeared, IFF_UP, IFF_LOWER_UP), netfo's own "enslave" event, and a packet
socket in the hypervisor namespace that sees the guest's UDP stream leave
through the VF's far end.  Both probes run as real-time processes (chrt),
so that what they time is netfo's, not their own scheduling.

    python -m netfo.lab.replug links IFNAME       (in the guest)
    python -m netfo.lab.replug tx IFNAME MAC PORT (where IFNAME's far end is)

each print {"event": "ready"}, then one JSON line per observation.
"""
from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Optional

from .. import spawn
from .tool import Tool

RTMGRP_LINK, RTM_NEWLINK, IFLA_IFNAME = 1, 16, 3
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
ETH_P_ALL, PACKET_OUTGOING = 0x0003, 4
PORT = 5353 + 1000                 # the timed stream's UDP port (the peer need not listen)


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def links(ifname: str) -> None:
    """Every RTM_NEWLINK about ifname: when, its ifindex, IFF_UP and carrier."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((0, RTMGRP_LINK))
    _emit({"event": "ready"})
    while True:
        data = s.recv(1 << 16)
        now = time.monotonic()
        off = 0
        while off + 32 <= len(data):
            length, mtype = struct.unpack_from("=IH", data, off)
            if length < 16:
                break
            if mtype == RTM_NEWLINK:
                index, flags = struct.unpack_from("=iI", data, off + 20)
                a = off + 32
                while a + 4 <= off + length:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if atype & 0x3fff == IFLA_IFNAME:
                        if data[a + 4:a + alen].split(b"\0")[0].decode() == ifname:
                            _emit({"t": now, "index": index, "up": bool(flags & IFF_UP),
                                   "carrier": bool(flags & IFF_LOWER_UP)})
                        break
                    a += (alen + 3) & ~3
            off += (length + 3) & ~3


def tx(ifname: str, mac: str, port: int) -> None:
    """The first frame of the guest's stream (source mac, UDP to port) seen
    arriving on ifname after a pause of 50 ms: when it started to flow."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    src = bytes.fromhex(mac.replace(":", ""))
    _emit({"event": "ready"})
    last = 0.0
    while True:
        frame, addr = s.recvfrom(256)
        now = time.monotonic()
        if (addr[0] != ifname or addr[2] == PACKET_OUTGOING or frame[6:12] != src
                or frame[12:14] != b"\x08\x00" or frame[23] != 17):
            continue
        ihl = (frame[14] & 0x0f) * 4
        if struct.unpack_from("!H", frame, 14 + ihl + 2)[0] != port:
            continue
        if now - last > 0.05:
            _emit({"t": now})
        last = now


class Probe(Tool):
    """One of the probes above in the lab's `role` namespace, as a
    real-time process; its observations collected as they come."""

    who = "replug: "

    def __init__(self, lab, role: str, *args: str):
        self.seen: list = []
        self.cond = threading.Condition()
        super().__init__(f"the {args[0]} probe", lab.namespaces[role],
                         argv=["chrt", "-f", "50", *spawn.python(__name__, *args)])
        try:
            self.ready()
        except BaseException:
            self.stop()
            raise

    def on_event(self, obj: dict) -> bool:
        if "t" not in obj:
            return False
        with self.cond:
            self.seen.append(obj)
            self.cond.notify_all()
        return True

    def first(self, pred, timeout: float) -> Optional[dict]:
        """The first observation for which pred holds, waiting up to timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hit = next((e for e in self.seen if pred(e)), None)
                left = deadline - time.monotonic()
                if hit is not None or left <= 0:
                    return hit
                self.cond.wait(left)


class Replugs:
    """Timed re-plugs of the lab's VF under netfo (a running harness.Netfo),
    with a stream of `rate` frames/s from the guest to the peer."""

    def __init__(self, lab, netfo, rate: float = 2000):
        from . import GUEST_IP4, MAC, PEER_IP4, PF, VF_IF  # noqa: F401
        self.lab, self.netfo = lab, netfo
        self.pf, self.vf = PF, VF_IF
        self.links = Probe(lab, "guest", "links", VF_IF)
        self.probes = [self.links]
        try:
            # the standby carries the stream while the VF is away
            # (`virsh domif-setlink ... up`, as the migration's first step)
            lab.link("virtio", "up")
            side = lab.status().get("vf_far_end") or "src"
            self.tx = Probe(lab, side, "tx", PF, MAC, str(PORT))
            self.probes.append(self.tx)
            self.stream = lab.popen("guest", sys.executable, "-m", "netfo.lab.stream", "send",
                                    PEER_IP4, str(PORT), "--rate", str(rate),
                                    stdout=subprocess.DEVNULL)
        except BaseException:
            self.close()
            raise

    def _active(self, role: str):
        return lambda st: st.get("active") == role

    def once(self, carrier_after: Optional[float] = None, timeout: float = 10) -> dict:
        """Unplug the VF, plug a new one; seconds from its first RTM_NEWLINK
        to netfo's enslave event, to its IFF_UP, to its carrier and to the
        stream's first frame through it (tx_after_carrier: from carrier).
        carrier_after: the VF's far end comes up that long after the VF
        did (None: it is up at once, carrier follows the VF's own up)."""
        if self.lab.status().get("vf_ifindex") is not None:
            self.lab.unplug()
            self.netfo.wait(self._active("standby"), timeout, "the standby transmitting")
        time.sleep(0.2)
        t0 = time.monotonic()
        self.lab.plug(carrier=carrier_after is None)
        new = self.links.first(lambda e: e["t"] >= t0, timeout)
        if new is None:
            raise RuntimeError("the new VF never appeared")
        index = new["index"]
        up = self.links.first(lambda e: e["index"] == index and e["up"], timeout)
        if up is None:
            raise RuntimeError(f"netfo did not bring the new VF up: {self.netfo.tail()}")
        if carrier_after is not None:
            time.sleep(max(0.0, up["t"] + carrier_after - time.monotonic()))
            self.lab.link("vf", "up")
        carrier = self.links.first(lambda e: e["index"] == index and e["carrier"], timeout)
        sent = self.tx.first(lambda e: carrier is not None and e["t"] >= t0, timeout)
        self.netfo.wait(self._active("primary"), timeout, "the VF transmitting")
        enslaved = next((e for e in self._events() if e["kind"] == "enslave"
                         and e.get("index") == index), None)

        def since(e, key="t"):
            return None if e is None else e[key] - new["t"]
        out = {"enslave": since(enslaved, "mono"), "up": since(up),
               "carrier": since(carrier), "tx": since(sent),
               "tx_after_carrier": None if sent is None or carrier is None
               else sent["t"] - carrier["t"]}
        return out

    def _events(self) -> list:
        out = self.netfo.cli("events", self.netfo.ifname, "--json").stdout
        return [json.loads(line) for line in out.splitlines()]

    def close(self) -> None:
        if getattr(self, "stream", None) is not None:
            self.stream.terminate()
            self.stream.wait()
        for p in self.probes:
            p.stop()


def main(argv: Optional[list] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["links"] and len(argv) == 2:
        links(argv[1])
    elif argv[:1] == ["tx"] and len(argv) == 4:
        tx(argv[1], argv[2], int(argv[3]))
    else:
        sys.exit("usage: python -m netfo.lab.replug links IFNAME | tx IFNAME MAC PORT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
