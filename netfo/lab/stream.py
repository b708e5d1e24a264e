"""Small traffic tools for `netfo demo`, run inside the lab's namespaces.

    python -m netfo.stream send DST PORT [--rate N] [--size B] [--seconds S]
    python -m netfo.stream recv PORT
    python -m netfo.stream tcp-echo HOST PORT
    python -m netfo.stream tcp-ping HOST PORT [--interval S]
    python -m netfo.stream watch IFNAME [--interval S]

Each tool prints JSON lines on stdout: first an event line once it is ready
({"event": "ready", ...}), and, when it is stopped with SIGTERM or SIGINT
(or its --seconds are up), one {"event": "result", ...} line with what it
saw. `watch` prints a {"event": "sample", ...} line per poll instead.

All times are CLOCK_MONOTONIC seconds (`time.monotonic()`), which is one
clock for the whole machine: times taken in different network namespaces
and by the process that started the tools can be compared directly.

send: datagram `seq` carries the big-endian u32 `seq` and the f64 time it
was due; frame `seq` is due at `start + seq / rate`. Python cannot sleep
100 us at a time, so the sender wakes about once per millisecond and sends
every frame that has come due (a burst of rate/1000 frames); if it was held
up, it catches up at once, and `max_lag_ms` says by how much it was late.
The socket is non-blocking: a frame that the local stack refuses (EAGAIN when
the socket's send buffer is full, e.g. while frames wait for ARP; ENETUNREACH;
...) still uses its sequence number, is counted by errno and is lost; the
sender never stalls, so the schedule (and the loss accounting) stays honest.

watch: samples `netfo status` of this namespace and reports every link and
neighbour event of the namespace (netlink), timed: carrier of the slaves and
the master, VFs appearing and vanishing, ARP entries flushed and resolved.

recv: records the sequence number and the receive time of every datagram,
plus the socket's own overflow drops (SO_RXQ_OVFL), so losses inside the
receiving host are told apart from losses on the way.
"""
from __future__ import annotations

import argparse
import errno
import json
import signal
import socket
import struct
import sys
import time
from array import array

HEADER = struct.Struct("!Id")            # seq, due time (monotonic s)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
RCVBUF = 8 << 20


class _Stop:
    """SIGTERM/SIGINT set a flag that the loops poll; no exception mid-send."""

    def __init__(self) -> None:
        self.set = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handler)

    def _handler(self, *_: object) -> None:
        self.set = True


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# ------------------------------------------------------------------- UDP

def send(dst: str, port: int, rate: float, size: int, seconds: float | None) -> None:
    stop = _Stop()
    s = socket.socket(_family(dst), socket.SOCK_DGRAM)
    s.connect((dst, port))                 # one route lookup, not one per frame
    s.setblocking(False)
    pad = b"\0" * max(0, size - HEADER.size)
    pack, mono, sleep = HEADER.pack, time.monotonic, time.sleep
    errors: dict[str, int] = {}
    seq, max_lag = 0, 0.0
    start = mono()
    _emit({"event": "ready", "start": start, "rate": rate, "dst": dst, "port": port})
    end = start + seconds if seconds else float("inf")
    while not stop.set:
        now = mono()
        if now >= end:
            break
        due = int((now - start) * rate) + 1          # frames 0..due-1 are due by now
        if due > seq:
            max_lag = max(max_lag, now - (start + seq / rate))
        while seq < due:
            try:
                s.send(pack(seq, start + seq / rate) + pad)
            except OSError as e:         # no route / carrier for a moment: lost
                name = errno.errorcode.get(e.errno, type(e).__name__)
                errors[name] = errors.get(name, 0) + 1
            seq += 1
        nxt = start + seq / rate
        delay = nxt - mono()
        if delay > 0:
            sleep(max(delay, 0.0009))
    _emit({"event": "result", "start": start, "stop": mono(), "rate": rate, "sent": seq,
           "send_errors": errors, "max_lag_ms": round(max_lag * 1000, 3)})


def recv(port: int, host: str = "::") -> None:
    stop = _Stop()
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:        # root may pass net.core.rmem_max: a receiver held up for a moment loses nothing
        s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), RCVBUF)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    s.bind((host, port))
    s.settimeout(0.05)
    seqs, times = array("I"), array("d")
    unpack, mono = HEADER.unpack_from, time.monotonic
    cmsg_space = socket.CMSG_SPACE(4)
    overflow, max_lat, max_lat_seq = 0, 0.0, -1
    _emit({"event": "ready", "port": port})
    while not stop.set:
        try:
            data, anc, _, _ = s.recvmsg(2048, cmsg_space)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        t = mono()
        if len(data) < HEADER.size:
            continue
        seq, due = unpack(data)
        seqs.append(seq)
        times.append(t)
        if t - due > max_lat:
            max_lat, max_lat_seq = t - due, seq
        for level, typ, val in anc:
            if level == socket.SOL_SOCKET and typ == SO_RXQ_OVFL and len(val) >= 4:
                overflow = struct.unpack("I", val[:4])[0]
    _emit({"event": "result", "received": len(seqs), "socket_overflow": overflow,
           "max_latency_ms": round(max_lat * 1000, 3), "max_latency_seq": max_lat_seq,
           "seqs": seqs.tolist(), "times": [round(t, 6) for t in times]})


# ------------------------------------------------------------------- TCP

def tcp_echo(host: str, port: int) -> None:
    """Accept one connection and echo it until EOF or a stop signal."""
    stop = _Stop()
    ls = socket.socket(_family(host), socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(1)
    ls.settimeout(0.1)
    _emit({"event": "ready", "port": port})
    conn, echoed, error, peer = None, 0, None, None
    while not stop.set and conn is None:
        try:
            conn, peer = ls.accept()
        except socket.timeout:
            continue
    if conn is not None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(0.1)
        while not stop.set:
            try:
                b = conn.recv(4096)
            except socket.timeout:
                continue
            except OSError as e:
                error = str(e)
                break
            if not b:
                break
            try:
                conn.sendall(b)
            except OSError as e:
                error = str(e)
                break
            echoed += len(b)
        conn.close()
    _emit({"event": "result", "peer": list(peer)[:2] if peer else None,
           "echoed_bytes": echoed, "error": error})


def tcp_ping(host: str, port: int, interval: float) -> None:
    """One connection, kept for the whole run: send an 8-byte counter every
    `interval`, wait for its echo; record when each round trip completed."""
    stop = _Stop()
    mono = time.monotonic
    try:
        c = socket.create_connection((host, port), timeout=5)
    except OSError as e:
        _emit({"event": "ready", "error": f"connect: {e}"})
        _emit({"event": "result", "connected_at": None, "error": f"connect: {e}",
               "exchanges": 0, "done": [], "rtt_ms": []})
        return
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.settimeout(0.05)
    connected = mono()
    local = c.getsockname()[:2]
    _emit({"event": "ready", "connected_at": connected, "local": list(local)})
    done, rtts = array("d"), array("d")
    error, n = None, 0
    nxt = mono()
    while not stop.set and error is None:
        delay = nxt - mono()
        if delay > 0:
            time.sleep(delay)
            if stop.set:
                break
        t0 = mono()
        msg = struct.pack("!Q", n)
        try:
            c.sendall(msg)
            got = b""
            while len(got) < len(msg) and not stop.set:
                try:
                    b = c.recv(len(msg) - len(got))
                except socket.timeout:
                    continue
                if not b:
                    raise ConnectionError("closed by the peer")
                got += b
        except OSError as e:
            error = f"{type(e).__name__}: {e}"
            break
        if len(got) < len(msg):
            break                                # stopped while waiting
        if got != msg:
            error = f"echo mismatch at exchange {n}"
            break
        t1 = mono()
        done.append(t1)
        rtts.append(t1 - t0)
        n += 1
        nxt = max(nxt + interval, t1)
    # Still the same connection? An error above, or a reset seen now, says no.
    if error is None:
        try:
            c.settimeout(0)
            b = c.recv(1)
            if b == b"":
                error = "closed by the peer"
        except BlockingIOError:
            pass
        except OSError as e:
            error = f"{type(e).__name__}: {e}"
    c.close()
    _emit({"event": "result", "connected_at": connected, "error": error, "exchanges": n,
           "done": [round(t, 6) for t in done], "rtt_ms": [round(r * 1000, 3) for r in rtts]})


# ------------------------------------------------------------------ watch

NUD = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY",
       0x10: "PROBE", 0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT"}


def _nud(state: int) -> str:
    return "|".join(n for bit, n in NUD.items() if state & bit) or "NONE"


def _monitor(emit, bound) -> None:
    """Link and neighbour events of this namespace, as they happen.

    Each event is stamped as its datagram arrives, before pyroute2 parses it
    (a link message takes 0.2-1 ms to parse): the bench measures netfo's
    switch from this time."""
    import socket
    from pyroute2 import IPRoute
    from pyroute2.netlink.rtnl import RTMGRP_LINK, RTMGRP_NEIGH
    from pyroute2.netlink.rtnl.marshal import MarshalRtnl
    from ..kernel.links import whole
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, RTMGRP_LINK | RTMGRP_NEIGH))     # first: an event while dumping is kept
    marshal = MarshalRtnl()
    with IPRoute() as once:
        names = {}
        for l in whole(once.link, "dump"):
            names[l["index"]] = l.get_attr("IFLA_IFNAME")
            carrier = l.get_attr("IFLA_CARRIER")
            emit({"event": "link", "t": round(time.monotonic(), 6), "index": l["index"],
                  "name": names[l["index"]], "gone": False, "initial": True,
                  "up": bool(l["flags"] & 0x1),
                  "carrier": bool(carrier if carrier is not None else l["flags"] & 0x10000)})
    bound.set()
    while True:
        try:
            data = sock.recv(1 << 16)
        except OSError as e:            # ENOBUFS: events were lost; go on with the next
            emit({"event": "overrun", "t": round(time.monotonic(), 6), "error": str(e)})
            continue
        t = time.monotonic()
        for msg in marshal.parse(data):
            ev = msg.get("event", "")
            idx = msg.get("index") or msg.get("ifindex")
            if ev in ("RTM_NEWLINK", "RTM_DELLINK"):
                name = msg.get_attr("IFLA_IFNAME") or names.get(idx, str(idx))
                names[idx] = name
                flags = msg["flags"]
                carrier = msg.get_attr("IFLA_CARRIER")
                emit({"event": "link", "t": round(t, 6), "index": idx, "name": name,
                      "gone": ev == "RTM_DELLINK", "up": bool(flags & 0x1),
                      "carrier": bool(carrier if carrier is not None else flags & 0x10000)})
            elif ev in ("RTM_NEWNEIGH", "RTM_DELNEIGH"):
                dst = msg.get_attr("NDA_DST")
                if not dst or dst.startswith("fe80") or dst.startswith("ff"):
                    continue
                emit({"event": "neigh", "t": round(t, 6), "dst": dst,
                      "dev": names.get(idx, str(idx)),
                      "state": "DELETED" if ev == "RTM_DELNEIGH" else _nud(msg["state"])})


def watch(ifname: str, interval: float) -> None:
    """Poll netfo's control socket (this namespace's) every `interval` s:
    which slave transmits, which slaves exist; one sample line per poll.
    Link and neighbour events come as "link"/"neigh" lines in between."""
    import threading
    from .. import control
    stop = _Stop()
    lock = threading.Lock()

    def emit(obj: dict) -> None:
        with lock:
            _emit(obj)
    bound = threading.Event()
    threading.Thread(target=_monitor, args=(emit, bound), daemon=True).start()
    bound.wait(5)
    emit({"event": "ready", "ifname": ifname})
    nxt = time.monotonic()
    while not stop.set:
        t = time.monotonic()
        try:
            st = control.request(ifname, "status", timeout=2)
        except (OSError, ValueError) as e:
            st = {"error": str(e)}
        sample: dict = {"event": "sample", "t": round(t, 6)}
        if st is None:
            sample["error"] = "not running"
        elif "error" in st:
            sample["error"] = st["error"]
        else:
            sample.update(active=st["active"], carrier=st["master"]["carrier"],
                          failovers=st["failovers"], drops=st["drops"],
                          slaves=[{"role": s["role"], "name": s["name"], "index": s["index"],
                                   "carrier": s["carrier"], "ready": s["ready"]}
                                  for s in st["slaves"]])
        emit(sample)
        nxt += interval
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            nxt = time.monotonic()
    emit({"event": "result"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m netfo.stream", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("send", help="send a sequence-numbered UDP stream")
    sp.add_argument("dst")
    sp.add_argument("port", type=int)
    sp.add_argument("--rate", type=float, default=10000, help="frames per second")
    sp.add_argument("--size", type=int, default=64, help="UDP payload bytes (>= 12)")
    sp.add_argument("--seconds", type=float, help="stop after this long (default: at SIGTERM)")
    rp = sub.add_parser("recv", help="receive a stream, report seq and time of each frame")
    rp.add_argument("port", type=int)
    ep = sub.add_parser("tcp-echo", help="echo one TCP connection")
    ep.add_argument("host")
    ep.add_argument("port", type=int)
    cp = sub.add_parser("tcp-ping", help="ping-pong over one TCP connection")
    cp.add_argument("host")
    cp.add_argument("port", type=int)
    cp.add_argument("--interval", type=float, default=0.01)
    wp = sub.add_parser("watch", help="sample netfo status (which slave transmits)")
    wp.add_argument("ifname")
    wp.add_argument("--interval", type=float, default=0.05)
    a = p.parse_args(argv)
    if a.cmd == "send":
        if a.rate <= 0 or a.size < HEADER.size:
            p.error(f"--rate must be > 0 and --size >= {HEADER.size}")
        send(a.dst, a.port, a.rate, a.size, a.seconds)
    elif a.cmd == "recv":
        recv(a.port)
    elif a.cmd == "tcp-echo":
        tcp_echo(a.host, a.port)
    elif a.cmd == "tcp-ping":
        tcp_ping(a.host, a.port, a.interval)
    else:
        watch(a.ifname, a.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
