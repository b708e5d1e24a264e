"""The figures, each measured between the lab's guest and peer namespaces.

Directions are named from the guest: "g2n" (guest -> network: the guest
sends to the peer) and "n2g" (network -> guest: the peer sends).
"""
from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

from netfo.lab import GUEST_IP4, PEER_IP4, Lab, LabError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TCP_PORT, UDP_PORT = 5201, 5202
DIRECTIONS = ("g2n", "n2g")
DIRECTION_NAMES = {"g2n": "guest→network", "n2g": "network→guest"}


class BenchError(Exception):
    """A measurement could not be made; the message says why, in one line."""


def cpu_seconds(pid: int | None) -> float | None:
    """utime+stime of a process, all its threads included (/proc/PID/stat)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_iperf_server(lab: Lab) -> subprocess.Popen:
    """One iperf3 server in the peer for all TCP runs of a lab (tests run one at a time)."""
    proc = lab.popen("peer", "iperf3", "-s", "-p", str(TCP_PORT), stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ss = lab.run("peer", "ss", "-Htln", f"sport = :{TCP_PORT}", check=False)
        if ss.stdout.strip():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise BenchError("iperf3 server in the peer did not start listening")


def tcp(lab: Lab, direction: str, seconds: float, streams: int = 1) -> dict:
    """iperf3 from the guest; -R makes the peer the sender (n2g); streams:
    parallel connections (-P), which --queues spreads over its queues."""
    # Time-outs so a path that cannot carry TCP fails in seconds, not minutes.
    argv = ["iperf3", "-c", PEER_IP4, "-p", str(TCP_PORT), "-t", f"{seconds:g}", "-J",
            "--connect-timeout", "3000", "-P", str(streams)]
    argv += ["-R", "--rcv-timeout", "3000"] if direction == "n2g" else ["--snd-timeout", "3000"]
    try:
        p = lab.run("guest", *argv, check=False, timeout=seconds + 15)
    except LabError as e:
        raise BenchError(f"iperf3: {e}") from None
    try:
        data = json.loads(p.stdout)
    except ValueError:
        raise BenchError(f"iperf3 printed no JSON: {p.stderr.strip() or p.stdout[-200:]}") from None
    if "error" in data:
        raise BenchError(f"iperf3: {data['error']}")
    end = data["end"]
    return {"gbps": end["sum_received"]["bits_per_second"] / 1e9,
            "bytes": end["sum_received"]["bytes"],
            "retransmits": end["sum_sent"].get("retransmits")}


def udp64(lab: Lab, direction: str, seconds: float) -> dict:
    """64-byte frames: packets offered by the sender and delivered to the receiver app."""
    src, dst, dst_ip = ("guest", "peer", PEER_IP4) if direction == "g2n" else ("peer", "guest", GUEST_IP4)
    blast = [sys.executable, "-m", "bench.udpblast"]
    rx = lab.popen(dst, *blast, "recv", "--port", str(UDP_PORT), "--seconds", f"{seconds + 10:g}",
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                   start_new_session=True)
    try:
        if rx.stdout.readline().strip() != "ready":
            raise BenchError(f"UDP receiver did not start: {rx.stderr.read().strip()}")
        tx = lab.run(src, *blast, "send", "--dst", dst_ip, "--port", str(UDP_PORT),
                     "--seconds", f"{seconds:g}", timeout=seconds + 30)
        sent = json.loads(tx.stdout)
        got = json.loads(rx.communicate(timeout=15)[0])
    except (subprocess.TimeoutExpired, ValueError) as e:
        raise BenchError(f"UDP test failed: {e}") from None
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    return {"offered_pps": sent["packets"] / sent["seconds"],
            "delivered_pps": got["packets"] / sent["seconds"],
            "seconds": sent["seconds"]}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def ping(lab: Lab, direction: str, count: int, interval: float) -> dict:
    """Round trips from the guest (g2n) or from the peer (n2g); p50/p99 in ms."""
    src, dst_ip = ("guest", PEER_IP4) if direction == "g2n" else ("peer", GUEST_IP4)
    p = lab.run(src, "ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", dst_ip,
                check=False, timeout=count * interval + 30)
    rtts = [float(m) for m in re.findall(r"time=([\d.]+) ms", p.stdout)]
    if not rtts:
        raise BenchError(f"ping {dst_ip} from {src} got no reply: {p.stdout.strip()[-200:]}")
    return {"p50_ms": percentile(rtts, 50), "p99_ms": percentile(rtts, 99),
            "mean_ms": statistics.fmean(rtts), "sent": count, "received": len(rtts)}


def wait_reachable(lab: Lab, timeout: float = 15) -> None:
    """The path forwards (ARP resolved, bond/failover settled) before anything is timed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.run("guest", "ping", "-n", "-c", "1", "-W", "1", PEER_IP4, check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise BenchError(f"the guest cannot reach the peer ({PEER_IP4}) within {timeout:g} s")


def stop(proc: subprocess.Popen) -> None:
    """Terminate, then kill after 5 s; close its pipes."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for f in (proc.stdout, proc.stderr):
        if f:
            f.close()
