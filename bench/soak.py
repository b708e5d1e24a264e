"""python3 -m bench.soak [--cycles N]: a long run of failovers under traffic.

In the namespace lab, netfo runs with path probing (--arp-target the peer)
and a sequence-numbered UDP stream each way (--rate frames/s, 10,000 by
default); cycle after cycle the VF is unplugged and plugged back (even
cycles) or loses and regains its carrier (odd cycles).  After each step the
bench waits until netfo's status shows the expected slave transmitting, and
checks that the status's transmitting slave ("active") is the datapath's
("loop_active").  A cycle that times out or disagrees is a failure.

Printed at the end (and returned as JSON with --json FILE): the daemon's
open fds, threads and RSS at the start and at the end, its log size, the
cycles and failures, and whether a slave was left held (a held slave whose
link is gone, or more than the two roles).  Needs root.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import queue
import sys
import threading
import time
from typing import Optional

from netfo import control
from netfo.errors import NetfoError
from netfo.lab import GUEST_IP4, PEER_IP4, VF_IF, Lab, harness
from netfo.lab.tool import Tool

IFNAME = "ens10"
PORTS = (5201, 5202)
CLONE_NEWNET = 0x40000000


class SoakError(NetfoError):
    pass


class Status:
    """netfo's status over its control socket (abstract: the guest
    namespace's), from a thread that has entered that namespace: far
    cheaper than a `netfo status` process per poll."""

    def __init__(self, netns: str):
        self.requests: "queue.Queue" = queue.Queue()
        self.replies: "queue.Queue" = queue.Queue()
        self.thread = threading.Thread(target=self._serve, args=(netns,), daemon=True)
        self.thread.start()
        err = self.replies.get(timeout=10)
        if err is not None:
            raise SoakError(f"cannot enter {netns}: {err}")

    def _serve(self, netns: str) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:       # this thread only
                self.replies.put(os.strerror(ctypes.get_errno()))
                return
        finally:
            os.close(fd)
        self.replies.put(None)
        while True:
            if self.requests.get() is None:
                return
            try:
                self.replies.put(control.request(IFNAME, "status", timeout=5))
            except (OSError, ValueError) as e:
                self.replies.put({"error": str(e)})

    def __call__(self) -> dict:
        self.requests.put(1)
        return self.replies.get(timeout=15) or {"error": "no daemon"}

    def close(self) -> None:
        self.requests.put(None)

    def wait(self, pred, timeout: float) -> Optional[dict]:
        deadline = time.monotonic() + timeout
        while True:
            st = self()
            if "error" not in st and pred(st):
                return st
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)


def proc_figures(pid: int) -> dict:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    fig = {"fds": fds}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == "Threads":
                fig["threads"] = int(v)
            elif k == "VmRSS":
                fig["rss_kb"] = int(v.split()[0])
    return fig


def log_size(paths: list) -> int:
    return sum(os.path.getsize(p) for p in paths if os.path.exists(p))


def both_ready(st: dict) -> bool:
    return st["active"] == "primary" and len(st["slaves"]) == 2 and \
        all(s["ready"] for s in st["slaves"])


def on_standby(st: dict) -> bool:
    return st["active"] == "standby"


def held_left(lab: Lab, st: dict) -> list:
    """Held slaves that should not be: a gone link, or a third one."""
    present = {l["ifindex"] for l in lab._links("guest")}
    bad = [s["name"] for s in st["slaves"] if s["index"] not in present]
    if len(st["slaves"]) > 2:
        bad.append(f"{len(st['slaves'])} slaves")
    return bad


def soak(cycles: int, rate: float, progress=None, timeout: float = 10.0,
         prefix: Optional[str] = None, mode: str = "both", netfo_args: tuple = ()) -> dict:
    say = progress or (lambda *_: None)
    lab = Lab(prefix or f"sk{os.getpid() % 1000}", log=lambda *_: None)
    res: dict = {"cycles": 0, "failures": 0, "failed": [], "rate": rate}
    with lab:
        lab.link("virtio", "up")
        ino = netns_ino(lab)
        logfile = f"/tmp/netfo-soak-{lab.prefix}.log"
        netfo = harness.Netfo(lab, "--arp-target", PEER_IP4, *netfo_args, logfile=logfile, keep_log=False)
        netfo.error = SoakError
        tools: list = []
        status = None
        try:
            netfo.start(ready=both_ready, timeout=20, what="ready with both slaves")
            status = Status(lab.namespaces["guest"])
            pid = status()["pid"]
            logs = [logfile, os.path.join(control.RUN_DIR, f"net{netns_ino(lab)}-{IFNAME}.log")]
            for role, dst in (("guest", PEER_IP4), ("peer", GUEST_IP4)):
                lab.run(role, "ping", "-c", "1", "-w", "5", "-q", dst, check=False, timeout=15)
            for (src, dst_ns, dst), port in zip((("guest", "peer", PEER_IP4),
                                                 ("peer", "guest", GUEST_IP4)), PORTS):
                rx = Tool(f"receiver in {dst_ns}", lab.namespaces[dst_ns], "recv", str(port))
                tools.append(rx)
                rx.ready()
                tx = Tool(f"sender in {src}", lab.namespaces[src], "send", dst, str(port),
                          "--rate", str(rate))
                tools.append(tx)
                tx.ready()
            time.sleep(1.0)                 # let the daemon settle under traffic
            res["start"] = {**proc_figures(pid), "log_bytes": log_size(logs)}
            say(f"start: {res['start']}")
            t0 = time.monotonic()
            for i in range(cycles):
                ok = True
                if mode == "unplug" or (mode == "both" and i % 2 == 0):
                    away, back = lab.unplug, lab.plug
                else:
                    away, back = (lambda: lab.link("vf", "down")), (lambda: lab.link("vf", "up"))
                for step, pred in ((away, on_standby), (back, both_ready)):
                    step()
                    st = status.wait(pred, timeout)
                    if st is None:
                        ok = False
                        res["failed"].append({"cycle": i, "why": f"timeout after {step.__name__}",
                                              "status": {k: status().get(k) for k in ("active", "loop_active")}})
                        break
                    st = status.wait(lambda s: s["active"] == s["loop_active"], 1.0)
                    if st is None:
                        ok = False
                        last = status()
                        res["failed"].append({"cycle": i, "why": "active != loop_active",
                                              "status": {k: last.get(k) for k in ("active", "loop_active")}})
                        break
                if not ok:
                    res["failures"] += 1
                    if lab._link("guest", VF_IF) is None:
                        lab.plug()
                    lab.link("vf", "up")
                    status.wait(both_ready, timeout)
                res["cycles"] = i + 1
                if (i + 1) % 50 == 0:
                    say(f"cycle {i + 1}/{cycles}: {res['failures']} failures, "
                        f"{proc_figures(pid)}, {time.monotonic() - t0:.0f} s")
            for t in tools:         # the counters add up between batches: read them quiet
                t.stop()
            time.sleep(1.0)
            st = status()
            res["end"] = {**proc_figures(pid), "log_bytes": log_size(logs)}
            res["held_left"] = held_left(lab, st)
            res["seconds"] = round(time.monotonic() - t0, 1)
            res["alive"] = netfo.proc.poll() is None
            res["drops"] = st["drops"]
            m = st["master"]["stats"]
            res["counts_add_up"] = (m["tx_received"] == m["tx_packets"] + m["tx_dropped"] and
                                    m["rx_received"] == m["rx_packets"] + m["rx_dropped"])
            say(f"end: {res['end']}")
        finally:
            for t in tools:
                t.stop()
            if status is not None:
                status.close()
            netfo.stop()
        res["journal_left"] = os.path.exists(
            os.path.join(control.RUN_DIR, f"net{ino}-{IFNAME}.journal"))
    return res


def netns_ino(lab: Lab) -> int:
    """The guest namespace's inode: netfo's files in /run/netfo are named after it."""
    return os.stat(f"/var/run/netns/{lab.namespaces['guest']}").st_ino


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--rate", type=float, default=10000, help="frames/s each way")
    p.add_argument("--mode", choices=("both", "unplug", "carrier"), default="both",
                   help="cycles: alternate unplug/plug and carrier flaps (default), or one kind")
    p.add_argument("--netfo-arg", action="append", default=[], help="an extra argument for netfo up")
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.soak: needs root (network namespaces)", file=sys.stderr)
        return 2
    res = soak(a.cycles, a.rate, mode=a.mode, netfo_args=tuple(a.netfo_arg), progress=lambda m: print(f"soak: {m}", file=sys.stderr, flush=True))
    s, e = res.get("start", {}), res.get("end", {})
    print(f"cycles {res['cycles']}, failures {res['failures']}, {res.get('seconds', 0)} s")
    for k in ("fds", "threads", "rss_kb", "log_bytes"):
        print(f"{k:10} start {s.get(k)!s:>10}  end {e.get(k)!s:>10}")
    print(f"held left: {res.get('held_left')}; journal left: {res.get('journal_left')}; "
          f"counts add up: {res.get('counts_add_up')}; daemon alive: {res.get('alive')}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    ok = (res["failures"] == 0 and not res.get("held_left") and res.get("alive")
          and res.get("counts_add_up"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
