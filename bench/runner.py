"""Runs the plan: for each lab mode and path, a fresh lab, every figure, teardown."""
from __future__ import annotations

import contextlib
import os
import signal
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Iterator, TextIO

from netfo.lab import Lab, LabError

from . import measure, ovs
from .measure import DIRECTION_NAMES, DIRECTIONS, BenchError
from .paths import FORWARDER, PATHS

# wire-gro: wire, and the VF merges segments (GRO) before the forwarder
# reads them, as a real VF driver does.
MODES = ("offload", "wire", "wire-gro")
SETUP_COST, TEARDOWN_COST = 3.0, 1.5        # s, for the time-left estimate


@dataclass
class Settings:
    tcp_seconds: float = 5
    repeats: int = 3
    udp_seconds: float = 3
    ping_count: int = 500
    ping_interval: float = 0.002
    streams: int = 1            # parallel TCP streams per iperf3 run (-P)

    def cost(self) -> float:
        """Planned seconds for one path in one mode."""
        return (SETUP_COST + TEARDOWN_COST
                + 2 * self.repeats * (self.tcp_seconds + 0.4)
                + 2 * (self.udp_seconds + 0.7)
                + 2 * (self.ping_count * self.ping_interval + 0.2))


class Progress:
    """One line per step on stderr: where, what, and time left.

    Time left is the plan still to run, scaled by how the plan has held so far.
    """

    def __init__(self, planned: float, out: TextIO = sys.stderr) -> None:
        self.planned, self.done, self.out = planned, 0.0, out
        self.t0 = time.monotonic()

    def step(self, where: str, what: str, cost: float) -> None:
        elapsed = time.monotonic() - self.t0
        pace = min(3.0, max(0.5, elapsed / self.done)) if self.done > 5 else 1.0
        left = max(0.0, self.planned - self.done) * pace
        print(f"[{_mmss(elapsed)}] {where:<18} {what:<34} ~{_mmss(left)} left", file=self.out, flush=True)
        self.done += cost

    def skip(self, cost: float) -> None:
        self.planned -= cost

    def note(self, text: str) -> None:
        print(f"[{_mmss(time.monotonic() - self.t0)}] {text}", file=self.out, flush=True)


def _mmss(s: float) -> str:
    return f"{int(s) // 60}:{int(s) % 60:02d}"


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Teardown must finish: a second Ctrl-C (or SIGTERM) waits until it did."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def unavailable(path: str) -> str | None:
    """Why a path cannot be measured on this machine, or None."""
    if path.startswith("ovs"):
        return ovs.missing()
    return None


def run(modes: list[str], paths: list[str], s: Settings, progress: Progress) -> dict:
    """results[mode][path] = figures (or {"skipped": why})."""
    results: dict = {}
    for mode in modes:
        results[mode] = {}
        for path in paths:
            why = unavailable(path)
            if why:
                progress.skip(s.cost())
                progress.note(f"{mode}/{path}: skipped: {why}")
                results[mode][path] = {"skipped": why}
                continue
            results[mode][path] = run_one(mode, path, s, progress)
        add_over_direct(results[mode])
    return results


def run_one(mode: str, path: str, s: Settings, progress: Progress) -> dict:
    where = f"{mode}/{path}"
    out: dict = {"forwarder": FORWARDER[path], "errors": [], "tcp": {}, "udp64": {}, "ping": {},
                 "cpu_s_per_gb": {}}
    tag = {"offload": "o", "wire": "w", "wire-gro": "g"}[mode]
    owner = os.environ.get("NETFO_TEST_PREFIX", "nb")    # as the lab tests' (tests/support)
    lab = Lab(f"{owner}{os.getpid() % 10000}-{tag}{path.replace('-', '')[:7]}",
              wire_like=mode != "offload", vf_gro=mode == "wire-gro", log=lambda *_: None)
    progress.step(where, "lab up, path setup", SETUP_COST)
    try:
        lab.up()
        with PATHS[path](lab) as pid:
            measure.wait_reachable(lab)
            server = measure.start_iperf_server(lab)
            try:
                _measure(lab, where, pid, s, progress, out)
            finally:
                with shielded():
                    server.kill()
                    server.wait()
            progress.step(where, "teardown", TEARDOWN_COST)
    except (BenchError, LabError, OSError, RuntimeError) as e:
        out["errors"].append(f"setup: {e}")
        progress.note(f"{where}: FAILED: {e}")
    finally:
        with shielded():
            lab.down()
    return out


def _attempt(out: dict, where: str, what: str, progress: Progress, fn):
    """Run one measurement; a failure is recorded and the others still run."""
    try:
        return fn()
    except (BenchError, LabError) as e:
        out["errors"].append(f"{what}: {e}")
        progress.note(f"{where}: {what}: FAILED: {e}")
        return None


def _measure(lab: Lab, where: str, pid: int | None, s: Settings, progress: Progress,
             out: dict) -> None:
    for d in DIRECTIONS:
        runs, cpu, nbytes = [], 0.0, 0
        for r in range(s.repeats):
            progress.step(where, f"TCP {DIRECTION_NAMES[d]} {r + 1}/{s.repeats}", s.tcp_seconds + 0.4)
            c0 = measure.cpu_seconds(pid)
            res = _attempt(out, where, f"TCP {d}", progress, lambda: measure.tcp(lab, d, s.tcp_seconds, s.streams))
            c1 = measure.cpu_seconds(pid)
            if res is None:
                break       # a path that cannot carry TCP will not on a retry either
            runs.append(res)
            nbytes += res["bytes"]
            cpu += (c1 - c0) if c0 is not None and c1 is not None else 0.0
        if runs:
            out["tcp"][d] = {"gbps": statistics.median(r["gbps"] for r in runs),
                             "runs_gbps": [r["gbps"] for r in runs],
                             "retransmits": [r["retransmits"] for r in runs],
                             "bytes": nbytes, "forwarder_cpu_s": cpu if pid else None}
            out["cpu_s_per_gb"][d] = cpu / (nbytes / 1e9) if pid and nbytes else None
    for d in DIRECTIONS:
        progress.step(where, f"64-byte UDP {DIRECTION_NAMES[d]}", s.udp_seconds + 0.7)
        c0 = measure.cpu_seconds(pid)
        res = _attempt(out, where, f"UDP {d}", progress, lambda: measure.udp64(lab, d, s.udp_seconds))
        c1 = measure.cpu_seconds(pid)
        if res is not None:
            res["forwarder_cpu_pct"] = (100 * (c1 - c0) / res["seconds"]
                                        if c0 is not None and c1 is not None else None)
            out["udp64"][d] = res
    for d in DIRECTIONS:
        progress.step(where, f"ping {DIRECTION_NAMES[d]}", s.ping_count * s.ping_interval + 0.2)
        res = _attempt(out, where, f"ping {d}", progress,
                       lambda: measure.ping(lab, d, s.ping_count, s.ping_interval))
        if res is not None:
            out["ping"][d] = res


def add_over_direct(mode_results: dict) -> None:
    """Ping round trip added over the direct path, per direction."""
    direct = mode_results.get("direct", {}).get("ping", {})
    for res in mode_results.values():
        for d, p in res.get("ping", {}).items():
            if d in direct:
                p["added_p50_ms"] = p["p50_ms"] - direct[d]["p50_ms"]
                p["added_p99_ms"] = p["p99_ms"] - direct[d]["p99_ms"]


def settings_dict(s: Settings) -> dict:
    return asdict(s)
