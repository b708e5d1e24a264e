"""What netfo's loop threads do during parallel TCP streams, per --queues:
CPU seconds and context switches of each thread (voluntary: it slept in
epoll; involuntary: it was preempted, another task wanted the core).

    python3 -m bench.loopthreads 1 2 1 2        # --queues values, in this order
    python3 -m bench.loopthreads --streams 8 --seconds 5 1 4

One lab per value; iperf3 -P STREAMS each way; one JSON line per run.
The loop threads are the daemon's threads that used more than 0.3 CPU s.
"""
from __future__ import annotations

import argparse
import glob
import json
import os

from netfo.lab import PEER_IP4, Lab

from .measure import start_iperf_server, stop, TCP_PORT
from .paths import netfo

TICK = os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> dict:
    """tid -> (CPU s, voluntary, involuntary context switches)."""
    out = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(f"{task}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
            with open(f"{task}/status") as f:
                st = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        out[task.rsplit("/", 1)[1]] = ((int(stat[11]) + int(stat[12])) / TICK,
                                       int(st["voluntary_ctxt_switches"]),
                                       int(st["nonvoluntary_ctxt_switches"]))
    return out


def run(queues: int, streams: int, seconds: float) -> None:
    owner = os.environ.get("NETFO_TEST_PREFIX", "nb")
    with Lab(f"{owner}{os.getpid() % 10000}-lt{queues}", log=lambda *_: None) as lab, \
            netfo(lab, "--queues", str(queues)) as pid:
        server = start_iperf_server(lab)
        try:
            for d in ("g2n", "n2g"):
                before = threads(pid)
                p = lab.run("guest", "iperf3", "-c", PEER_IP4, "-p", str(TCP_PORT), "-J",
                            "-t", f"{seconds:g}", "-P", str(streams), *(["-R"] if d == "n2g" else []))
                after = threads(pid)
                gbps = json.loads(p.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
                loops = [tuple(round(a - b, 2) for a, b in zip(after[t], before[t]))
                         for t in after if t in before]
                loops = [t for t in loops if t[0] > 0.3]
                print(json.dumps({"queues": queues, "direction": d, "streams": streams,
                                  "gbps": round(gbps, 2), "cpu_s": [t[0] for t in loops],
                                  "voluntary": [t[1] for t in loops],
                                  "involuntary": [t[2] for t in loops]}), flush=True)
        finally:
            stop(server)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("queues", type=int, nargs="+")
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5)
    a = ap.parse_args()
    for q in a.queues:
        run(q, a.streams, a.seconds)


if __name__ == "__main__":
    main()
