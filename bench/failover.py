"""python3 -m bench.failover: what a failover costs the traffic, netfo against net_failover's behaviour.

In the namespace lab (netfo.lab) netfo joins ens10 (virtio, with carrier) and
ens11 (the VF); a sequence-numbered UDP stream runs each way (guest -> peer
and peer -> guest, python -m netfo.stream) while, cycle after cycle, the VF
goes away and comes back, for each cause:

  deleted   lab.unplug() (virsh detach-device), then lab.plug() (attach-device)
  carrier   the VF's far end set down / up (virsh domif-setlink): carrier lost
  admin     `ip link set ens11 down` / `up` in the guest
  blackhole the VF's far end drops everything while its carrier stays up
            (netfo's path probing, PROBE_ARGS; netfo only: the kernel has none)

Two variants, in the same lab and the same run, each block of cycles with a
fresh netfo: `netfo` as it is, and `kernel` = `--notify-count 0 --no-resend`
(no peer announcements; a frame whose slave vanished mid-send is dropped:
what the kernel's net_failover does), so the gain is a measured ratio. Each
cause's cycles run in --blocks blocks in ABBA order (netfo, kernel, kernel,
netfo), so a change in the machine's load hits both variants alike; a block
during which the hypervisor stole more than --max-steal % of the CPU time
is measured again (the JSON keeps what it had lost).

Attribution: an action at t opens a window [t - GUARD, next action - GUARD);
a lost frame counts in the window its due time (stream start + seq / rate)
falls in; a gap between two receptions counts in the window of the
reception that opened it. Between actions the bench waits until netfo's
status shows the expected slave transmitting, and at least --dwell ms.

Progress on stderr, the table on stdout, everything in JSON
(default bench/failover.json).
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

from netfo.lab import events, harness, tool as stream_tool
from netfo.lab.events import Events
from netfo.lab import GUEST_IP4, PEER_IP4, PF, VF_IF, Lab, LabError
from netfo.errors import NetfoError

from .runner import Progress, _mmss, shielded
from .slavecap import SlaveCapture, count_between, first_after

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IFNAME = "ens10"
PORTS = {"guest_to_peer": 5101, "peer_to_guest": 5102}
DIRECTIONS = ("guest_to_peer", "peer_to_guest")
DIR_SHORT = {"guest_to_peer": "g→p", "peer_to_guest": "p→g"}
PHASES = ("away", "back")

# What each variant adds to `netfo up ens10 --foreground`.
VARIANTS = {
    "netfo": [],
    "kernel": ["--notify-count", "0", "--no-resend"],     # the baseline
    # ... and the driver's receive rule too (B-26): standby frames dropped
    # while a primary is registered, with link or without
    "driver": ["--notify-count", "0", "--no-resend", "--rx-policy", "kernel"],
}

# The black-hole cause needs netfo's path probing. The kernel variant is not
# run for it: net_failover has no probing and never leaves a black-holed VF.
# With --probe-interval 20 the probes flapped back to the black-holed VF
# under heavy CPU steal; 50 ms x 3 here.
PROBE_ARGS = ["--arp-target", PEER_IP4, "--probe-interval", "50", "--probe-missed", "3"]


class BenchError(Exception):
    """The run cannot go on; one line for the user."""


# ------------------------------------------------------------------ causes

def _ip(lab: Lab, role: str, *args: str) -> None:
    p = subprocess.run(["ip", "-n", lab.namespaces[role], *args], capture_output=True, text=True,
                       timeout=30)
    if p.returncode:
        raise LabError(f"ip -n {lab.namespaces[role]} {' '.join(args)}: {p.stderr.strip()}")


def _port_state(lab: Lab, state: int, check: bool = True) -> None:
    """STP state of the VF's switch port: 0 (disabled) forwards nothing either
    way while the carrier stays up (as tests/test_quality.py black-holes it); 3 forwards."""
    p = subprocess.run(["bridge", "-n", lab.namespaces["src"], "link", "set", "dev", PF,
                        "state", str(state)], capture_output=True, text=True, timeout=30)
    if check and p.returncode:
        raise LabError(f"bridge link set dev {PF} state {state}: {p.stderr.strip()}")


def _blackhole_on(lab: Lab) -> None:
    _port_state(lab, 0)


def _blackhole_off(lab: Lab) -> None:
    _port_state(lab, 3)


class Cause:
    def __init__(self, name: str, away_label: str, back_label: str,
                 away: Callable[[Lab], object], back: Callable[[Lab], object],
                 netfo_args: tuple = (), variants: tuple = tuple(VARIANTS), reason: str = ""):
        self.name, self.labels = name, {"away": away_label, "back": back_label}
        self.actions = {"away": away, "back": back}
        self.netfo_args, self.variants, self.reason = list(netfo_args), variants, reason


CAUSES = {
    "deleted": Cause("deleted", "unplug (VF deleted)", "re-plug (new VF)",
                     lambda lab: lab.unplug(), lambda lab: lab.plug(), reason="deleted"),
    "carrier": Cause("carrier", "VF carrier lost", "VF carrier back",
                     lambda lab: lab.link("vf", "down"), lambda lab: lab.link("vf", "up"),
                     reason="carrier"),
    "admin": Cause("admin", "ip link set ens11 down", "ip link set ens11 up",
                   lambda lab: _ip(lab, "guest", "link", "set", VF_IF, "down"),
                   lambda lab: _ip(lab, "guest", "link", "set", VF_IF, "up"), reason="admin"),
    "blackhole": Cause("blackhole", "VF path black-holed", "VF path healed",
                       _blackhole_on, _blackhole_off, netfo_args=tuple(PROBE_ARGS),
                       variants=("netfo",), reason="probe"),
}
DEFAULT_CAUSES = ("deleted", "carrier", "admin", "blackhole")


# ------------------------------------------------------------------ tools

class Tool(stream_tool.Tool):
    """The demo's stream tool; the bench keeps only the watcher's latest
    sample (waking whoever waits for it) and the VF's own link events."""
    who = ""

    def __init__(self, name: str, ns: str, *args: str):
        self.sample: Optional[dict] = None          # the watcher's latest sample
        self.vf_events: list[dict] = []             # the watcher's netlink events of ens11
        self.changed = threading.Condition()
        super().__init__(name, ns, *args)

    def on_event(self, obj: dict) -> bool:
        ev = obj.get("event")
        if ev == "sample":
            with self.changed:
                self.sample = obj
                self.changed.notify_all()
            return True
        if ev == "link":
            if obj.get("name") == VF_IF and not obj.get("initial"):
                self.vf_events.append(obj)
            return True
        return ev == "neigh"

    def _read(self) -> None:
        super()._read()
        with self.changed:
            self.changed.notify_all()

    def ready(self, timeout: float = 15) -> dict:
        try:
            return super().ready(timeout)
        except NetfoError as e:
            raise BenchError(str(e)) from None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Netfo(harness.Netfo):
    """`netfo up ens10 --foreground ARGS` in the guest (netfo.lab.harness), logging to a file."""
    error = BenchError


def log_warnings(path: str) -> list[str]:
    """netfo's warning and error lines, for the report (no event covers them)."""
    try:
        with open(path, errors="replace") as f:
            return [l.rstrip("\n") for l in f if " WARNING " in l or " ERROR " in l]
    except OSError:
        return []


def netfo_switches(netfo_events: list) -> list:
    """[(monotonic s, to, reason)]: netfo's switches, from its structured events."""
    return [(t, str(to), why) for t, to, why, _ in events.switches(netfo_events, IFNAME)]


# ------------------------------------------------------------------ one segment

def cpu_times() -> list[int]:
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def cpu_use(t0: list[int], t1: list[int]) -> dict:
    """Busy and steal % of all CPUs between two /proc/stat samples."""
    d = [b - a for a, b in zip(t0, t1)]
    total = sum(d) or 1
    return {"busy_pct": round(100.0 * (total - d[3] - d[4]) / total, 1),
            "steal_pct": round(100.0 * d[7] / total, 1)}


class Segment:
    """One block of one cause x variant: netfo up, streams, cycles first..first+n-1,
    streams stopped, netfo down."""

    def __init__(self, lab: Lab, cause: Cause, variant: str, block: int, first: int, n: int,
                 a: argparse.Namespace, progress: Progress, logdir: str, plan: "Plan"):
        self.lab, self.cause, self.variant, self.a = lab, cause, variant, a
        self.block, self.first, self.n = block, first, n
        self.progress, self.plan = progress, plan
        self.logfile = os.path.join(logdir, f"netfo-{cause.name}-{variant}-{block}.log")
        self.cpu: dict = {}
        self.cpu_end: list[int] = []
        self.foreign: set = set()        # others' namespaces seen while this block ran
        self.vf_events: list[dict] = []
        self.frames: list = []           # (t, ifindex) of the guest's stream frames on the slaves
        self.netfo_events: list = []     # netfo's structured events (netfo.lab.events)
        self.standby_index = 0
        self.tools: list[Tool] = []
        self.actions: list[dict] = []
        self.errors: list[str] = []

    def _tool(self, name: str, role: str, *args: str) -> Tool:
        t = Tool(name, self.lab.namespaces[role], *args)
        self.tools.append(t)
        return t

    def _reset_lab(self) -> None:
        """Every segment starts alike: VF plugged, up, carrier; virtio carrier; no black hole."""
        lab = self.lab
        _port_state(lab, 3, check=False)
        if lab._link("guest", VF_IF) is None:
            lab.plug()
        _ip(lab, "src", "link", "set", PF, "up")
        _ip(lab, "guest", "link", "set", VF_IF, "up")
        lab.link("virtio", "up")

    def _wait_for(self, watch: Tool, after: float, pred, timeout: float) -> Optional[float]:
        """Wait for a watcher sample taken after `after` satisfying pred; its time or None."""
        deadline = time.monotonic() + timeout
        with watch.changed:
            while True:
                s = watch.sample
                if s is not None and s["t"] > after and "error" not in s and pred(s):
                    return s["t"]
                left = deadline - time.monotonic()
                if left <= 0 or not watch.alive():
                    return None
                watch.changed.wait(min(left, 0.1))

    def _check_tools(self, tools) -> None:
        for t in tools:
            if not t.alive():
                raise BenchError(f"{t.name} exited early: "
                                 f"{(t.stderr.strip().splitlines() or ['no output'])[-1]}")

    def run(self) -> dict:
        a, lab, cause = self.a, self.lab, self.cause
        where = f"{cause.name}/{self.variant}"
        self.foreign |= self.plan.look()
        self.progress.step(where, "setting up" + (f" (block {self.block + 1} of {a.blocks})"
                                                  if a.blocks > 1 else ""), self.plan.setup)
        self._reset_lab()
        netfo = Netfo(lab, *VARIANTS[self.variant], *cause.netfo_args, *a.netfo_arg,
                      ifname=IFNAME, logfile=self.logfile)
        cap = None
        try:
            netfo.start(timeout=20)
            follower = Events(lab.guest, IFNAME)
            self.tools.append(follower)
            index = {l["ifname"]: l["ifindex"] for l in lab._links("guest")}
            self.standby_index = index[IFNAME + "nsby"]
            cap = SlaveCapture(lab.guest, self.logfile[:-4] + ".pcap", PORTS["guest_to_peer"],
                               index[IFNAME])
            watch = self._tool("the status watcher", "guest", "watch", IFNAME,
                               "--interval", str(a.poll / 1000))
            watch.ready()

            def steady(s):
                return s["active"] == "primary" and len(s["slaves"]) == 2 and \
                    all(sl["carrier"] and sl["ready"] for sl in s["slaves"])
            if self._wait_for(watch, 0, steady, 10) is None:
                raise BenchError(f"{where}: netfo never had both slaves ready with the VF "
                                 f"transmitting: {watch.sample}")
            for role, dst in (("guest", PEER_IP4), ("peer", GUEST_IP4)):   # resolve neighbours
                p = lab.run(role, "ping", "-c", "1", "-w", "5", "-q", dst, check=False, timeout=15)
                if p.returncode:
                    raise BenchError(f"{where}: no connectivity through netfo ({role} -> {dst})")
            rx = {"guest_to_peer": self._tool("the receiver in the peer", "peer", "recv",
                                              str(PORTS["guest_to_peer"])),
                  "peer_to_guest": self._tool("the receiver in the guest", "guest", "recv",
                                              str(PORTS["peer_to_guest"]))}
            for t in rx.values():
                t.ready()
            rate = f"{a.rate:g}"
            tx = {"guest_to_peer": self._tool("the sender in the guest", "guest", "send", PEER_IP4,
                                              str(PORTS["guest_to_peer"]), "--rate", rate),
                  "peer_to_guest": self._tool("the sender in the peer", "peer", "send", GUEST_IP4,
                                              str(PORTS["peer_to_guest"]), "--rate", rate)}
            for t in tx.values():
                t.ready()
            streams = [*tx.values(), *rx.values(), watch]
            time.sleep(a.baseline / 1000)
            self._check_tools(streams)
            expect = {"away": "standby", "back": "primary"}
            every = max(1, a.cycles // 5)
            last = self.first + self.n - 1
            marks = sorted({self.first, *range(every, last + 1, every), last} - set(range(self.first)))
            marks.append(last + 1)
            cpu0 = cpu_times()
            for i in range(self.first, last + 1):
                if i in marks:
                    nxt = marks[marks.index(i) + 1]
                    self.foreign |= self.plan.look()
                    self.progress.step(where, f"cycle {i}/{a.cycles}", self.plan.cycle * (nxt - i))
                for phase in PHASES:
                    cpu = cpu_times()
                    t0 = time.monotonic()
                    cause.actions[phase](lab)
                    t1 = time.monotonic()
                    want = expect[phase]
                    seen = self._wait_for(watch, t1, lambda s: s["active"] == want, a.timeout)
                    if seen is None:
                        self.errors.append(f"cycle {i} {phase}: {want} not transmitting "
                                           f"{a.timeout:g} s after the action "
                                           f"(last status: {watch.sample})")
                    rest = max(t0 + a.dwell / 1000, (seen or t1) + a.quiet / 1000) - time.monotonic()
                    if rest > 0:
                        time.sleep(rest)
                    self.actions.append({"cycle": i, "phase": phase, "t": t0,
                                         "took_ms": round((t1 - t0) * 1000, 2),
                                         "seen_ms": round((seen - t0) * 1000, 1) if seen else None,
                                         "settled": seen, "cpu": cpu})
                    self._check_tools(streams)
                    if seen is None:
                        raise BenchError(f"{where}: {self.errors[-1]}")
            end = time.monotonic()
            self.cpu_end = cpu_times()
            self.cpu = cpu_use(cpu0, self.cpu_end)
            self.progress.step(where, "stopping the streams", self.plan.teardown)
            results = {}
            for d in DIRECTIONS:
                if tx[d].stop() is None:
                    raise BenchError(f"{where}: {tx[d].name} gave no result")
            time.sleep(0.3)                        # frames still on their way
            for d in DIRECTIONS:
                if rx[d].stop(timeout=60) is None:
                    raise BenchError(f"{where}: {rx[d].name} gave no result")
                results[d] = (tx[d].result, rx[d].result)
            watch.stop()
            self.vf_events = list(watch.vf_events)
            self.netfo_events = follower.collect()       # netfo still runs: its ring too
            self.frames = cap.stop()
            self.foreign |= self.plan.look()
        finally:
            for t in self.tools:
                try:
                    t.stop(timeout=5)
                except Exception:
                    t.kill()
            self.tools = []
            if cap is not None:
                cap.stop()
            netfo.stop()
        return analyse_segment(self, results, end)


# ------------------------------------------------------------------ analysis

def quantile(xs: list, q: float) -> Optional[float]:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not xs:
        return None
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def dist(xs: list, nd: int = 2) -> dict:
    return {"p50": _r(quantile(xs, 0.5), nd), "p99": _r(quantile(xs, 0.99), nd),
            "max": _r(max(xs) if xs else None, nd), "mean": _r(sum(xs) / len(xs) if xs else None, nd),
            "total": _r(sum(xs), nd) if xs else 0, "n": len(xs)}


def _r(v, nd):
    return None if v is None else round(v, nd)


def _direction(tx: dict, rx: dict, bounds: list, quiet_from: list, end: float) -> dict:
    """Per window: frames lost (by due time), longest gap between receptions
    (in the window of the reception that opened it), and the longest gap in
    the window's quiet part (after netfo settled: the noise floor)."""
    rate, start, sent = tx["rate"], tx["start"], tx["sent"]
    seqs, times = rx["seqs"], rx["times"]
    got = bytearray(sent)
    dups = 0
    for s in seqs:
        if s < sent:
            if got[s]:
                dups += 1
            got[s] = 1
    n = len(bounds)
    lost = [0] * n
    first = [None] * n           # due time of the first and last frame lost in the window
    last = [None] * n
    run = [0] * n                # longest run of consecutive lost frames
    lost_quiet = [0] * n         # lost although due after netfo had settled
    lost_before = 0
    pos, prev_lost, cur = got.find(0), -2, 0
    while pos >= 0:
        due = start + pos / rate
        i = bisect.bisect_right(bounds, due) - 1
        if i >= 0:
            lost[i] += 1
            if due >= quiet_from[i]:
                lost_quiet[i] += 1
            if first[i] is None:
                first[i] = due
            last[i] = due
            cur = cur + 1 if pos == prev_lost + 1 else 1
            run[i] = max(run[i], cur)
        else:
            lost_before += 1
        prev_lost = pos
        pos = got.find(0, pos + 1)
    gap = [0.0] * n
    quiet = [0.0] * n
    prev = None
    i = -1
    for t in times:
        if prev is not None:
            while i + 1 < n and bounds[i + 1] <= prev:
                i += 1
            if i >= 0:
                g = t - prev
                if g > gap[i]:
                    gap[i] = g
                if prev >= quiet_from[i] and g > quiet[i]:
                    quiet[i] = g
        prev = t
    # a stream that stopped inside a window: the gap runs to the stream's end
    if prev is not None:
        i = bisect.bisect_right(bounds, prev) - 1
        if i >= 0:
            gap[i] = max(gap[i], end - prev)
    received = sum(got)
    return {"lost": lost, "gap_ms": [round(g * 1000, 3) for g in gap],
            "first_lost": first, "last_lost": last, "lost_run": run, "lost_quiet": lost_quiet,
            "quiet_gap_ms": [round(g * 1000, 3) for g in quiet],
            "summary": {"sent": sent, "received": received, "lost": sent - received,
                        "duplicates": dups, "lost_before_first_action": lost_before,
                        "socket_overflow": rx.get("socket_overflow", 0),
                        "send_errors": tx.get("send_errors", {}),
                        "sender_max_lag_ms": tx.get("max_lag_ms"),
                        "max_latency_ms": rx.get("max_latency_ms")}}


def analyse_segment(seg: Segment, results: dict, end: float) -> dict:
    a = seg.a
    guard = a.guard / 1000
    bounds = [x["t"] - guard for x in seg.actions]
    # quiet part of a window: from quiet/2 after netfo was seen settled
    quiet_from = [(x["settled"] or x["t"]) + a.quiet / 2000 for x in seg.actions]
    per_dir = {d: _direction(*results[d], bounds, quiet_from, end) for d in DIRECTIONS}
    # netfo's own account: the first switch it logged after each action
    switches = netfo_switches(seg.netfo_events)
    reasons: dict = {}
    for _, to, why in switches:
        reasons[f"{why} -> {to}"] = reasons.get(f"{why} -> {to}", 0) + 1
    warnings = log_warnings(seg.logfile)
    # what the kernel announced about ens11 (as heard by the watcher's netlink
    # socket, an upper bound on the event's time): the change each action makes
    want = {"away": lambda e: e["gone"] or not e["up"] or not e["carrier"],
            "back": lambda e: not e["gone"] and e["up"] and e["carrier"]}
    cycles = []
    for k, x in enumerate(seg.actions):
        nxt = seg.actions[k + 1]["t"] if k + 1 < len(seg.actions) else end
        cpu_next = seg.actions[k + 1]["cpu"] if k + 1 < len(seg.actions) else seg.cpu_end
        sw = [(t, to, why) for t, to, why in switches if x["t"] - guard <= t < nxt - guard]
        first = sw[0] if sw else None
        ev = next((e for e in seg.vf_events if x["t"] <= e["t"] < nxt and want[x["phase"]](e)), None)
        # the switch: from that event to the first guest frame that left by the new slave
        new, old = (seg.standby_index, ev and ev["index"]) if x["phase"] == "away" else \
            (ev and ev["index"], seg.standby_index)
        moved = ev and first_after(seg.frames, ev["t"], new, nxt)
        cycles.append({
            "cycle": x["cycle"], "phase": x["phase"], "t_s": round(x["t"] - bounds[0] - guard, 4),
            "action_ms": x["took_ms"], "seen_by_status_ms": x["seen_ms"],
            "switch_logged_ms": round((first[0] - x["t"]) * 1000, 1) if first else None,
            "vf_event_heard_ms": round((ev["t"] - x["t"]) * 1000, 1) if ev else None,
            "switch_ms": round((moved - ev["t"]) * 1000, 3) if moved else None,
            # guest frames that still left by the old slave after the event
            "old_slave_after_event": count_between(seg.frames, ev["t"], moved, old) if moved else None,
            "switches": [f"{why} -> {to}" for _, to, why in sw],
            "lost": {d: per_dir[d]["lost"][k] for d in DIRECTIONS},
            # due times of the first and last lost frame, ms after the action
            "lost_span_ms": {d: [round((per_dir[d][e][k] - x["t"]) * 1000, 2) for e in
                                 ("first_lost", "last_lost")] if per_dir[d]["lost"][k] else None
                             for d in DIRECTIONS},
            "longest_lost_run_ms": {d: round(per_dir[d]["lost_run"][k] * 1000 / a.rate, 2)
                                    for d in DIRECTIONS},
            "lost_after_settling": {d: per_dir[d]["lost_quiet"][k] for d in DIRECTIONS},
            "gap_ms": {d: per_dir[d]["gap_ms"][k] for d in DIRECTIONS},
            "quiet_gap_ms": {d: per_dir[d]["quiet_gap_ms"][k] for d in DIRECTIONS},
            "cpu_steal_pct": cpu_use(x["cpu"], cpu_next)["steal_pct"]})
    return {"block": seg.block, "cycles": cycles, "cpu": seg.cpu,
            "others_namespaces": sorted(seg.foreign),
            "streams": {d: per_dir[d]["summary"] for d in DIRECTIONS},
            "switch_reasons": reasons, "netfo_warnings": warnings[-20:],
            "netfo_log": seg.logfile, "errors": seg.errors}


def summarize(cycles: list[dict]) -> dict:
    summary = {}
    for ph in PHASES:
        rows = [c for c in cycles if c["phase"] == ph]
        summary[ph] = {d: {"lost": dist([c["lost"][d] for c in rows], 1),
                           "gap_ms": dist([c["gap_ms"][d] for c in rows], 2),
                           "quiet_gap_ms": dist([c["quiet_gap_ms"][d] for c in rows], 2),
                           "longest_lost_run_ms": dist([c["longest_lost_run_ms"][d] for c in rows], 2)}
                       for d in DIRECTIONS}
        sw = [c["switch_logged_ms"] for c in rows if c["switch_logged_ms"] is not None]
        summary[ph]["switch_logged_ms"] = dist(sw, 1)
        summary[ph]["vf_event_heard_ms"] = dist([c["vf_event_heard_ms"] for c in rows
                                                 if c["vf_event_heard_ms"] is not None], 1)
        summary[ph]["switch_ms"] = dist([c["switch_ms"] for c in rows
                                         if c["switch_ms"] is not None], 3)
        summary[ph]["old_slave_after_event"] = dist([c["old_slave_after_event"] for c in rows
                                                     if c["old_slave_after_event"] is not None], 1)
        for d in DIRECTIONS:
            # how long after the kernel's event the last frame was lost
            summary[ph][d]["last_loss_after_event_ms"] = dist(
                [c["lost_span_ms"][d][1] - c["vf_event_heard_ms"] for c in rows
                 if c["lost_span_ms"][d] and c["vf_event_heard_ms"] is not None], 2)
        summary[ph]["windows"] = len(rows)
    return summary


def merge(seg_args: list, blocks: list[dict], max_steal: float) -> dict:
    """The blocks of one cause x variant as one result. `summary`: distributions
    over the windows during which the hypervisor stole at most max_steal % of
    the CPU time (a stolen vCPU stalls every process at once, netfo's loop, the
    senders and the receivers alike, which is no property of either variant);
    `summary_all`: over every window."""
    cycles = sorted((c for b in blocks for c in b["cycles"]), key=lambda c: (c["cycle"], c["phase"]))
    summary = summarize([c for c in cycles if c["cpu_steal_pct"] <= max_steal])
    summary_all = summarize(cycles)
    streams = {}
    for d in DIRECTIONS:
        parts = [b["streams"][d] for b in blocks]
        m = {k: sum(p[k] for p in parts) for k in ("sent", "received", "lost", "duplicates",
                                                   "lost_before_first_action", "socket_overflow")}
        m["sender_max_lag_ms"] = max((p["sender_max_lag_ms"] or 0) for p in parts)
        m["max_latency_ms"] = max((p["max_latency_ms"] or 0) for p in parts)
        errs: dict = {}
        for p in parts:
            for k, n in p["send_errors"].items():
                errs[k] = errs.get(k, 0) + n
        m["send_errors"] = errs
        streams[d] = m
    reasons: dict = {}
    for b in blocks:
        for k, n in b["switch_reasons"].items():
            reasons[k] = reasons.get(k, 0) + n
    return {"netfo_args": seg_args, "cycles_done": len(cycles) // 2, "summary": summary,
            "summary_all": summary_all, "streams": streams, "switch_reasons": reasons,
            "lost_after_settling": {d: sum(c["lost_after_settling"][d] for c in cycles)
                                    for d in DIRECTIONS},
            "windows_with_steal_over_10pct": sum(1 for c in cycles if c["cpu_steal_pct"] > 10),
            "blocks": [{"block": b["block"], "cycles": sorted({c["cycle"] for c in b["cycles"]}),
                        "cpu": b["cpu"], "others_namespaces": b["others_namespaces"],
                        "streams": b["streams"], "netfo_log": b["netfo_log"],
                        "netfo_warnings": b["netfo_warnings"]} for b in blocks],
            "errors": [e for b in blocks for e in b["errors"]], "cycles": cycles}


# ------------------------------------------------------------------ report

def _n(v, nd=0) -> str:
    if v is None:
        return "-"
    if nd == 0:
        return f"{v:,.0f}"
    return f"{v:.{nd}f}"


def _trip(d: dict, nd: int) -> str:
    return "/".join(_n(d[k], nd) for k in ("p50", "p99", "max"))


def ratio(with_: float, without: float) -> Optional[float]:
    return None if not without else with_ / without


def table(doc: dict) -> str:
    res, s = doc["results"], doc["settings"]
    variants = s["variants"]
    head = [f"Failover cost per cycle, {s['cycles']} cycles per cause, "
            f"{s['rate']:,.0f} frames/s each way; p50/p99/max over cycles",
            "  lost: frames due in the window (action - "
            f"{s['guard_ms']:g} ms .. next action - {s['guard_ms']:g} ms) that never arrived; "
            "gap: longest time between two receptions, ms",
            "  netfo: as it is; kernel: --notify-count 0 --no-resend (no announcements, no resend, "
            "as net_failover); driver: also --rx-policy kernel (net_failover's receive rule, "
            "B-26); ratio: mean lost per window, netfo / kernel (x/0: only netfo lost)",
            f"  n: windows counted, those during which the hypervisor stole at most "
            f"{s['max_steal_pct']:g} % of the CPU time (all windows: summary_all in the JSON)", ""]
    cols = f"{'cause':<8} {'phase':<24} {'dir':<4}"
    for v in variants:
        cols += f" | {v + ' lost':>15} {v + ' gap ms':>20} {'n':>3}"
    cols += f" | {'ratio':>6}"
    lines = head + [cols, "-" * len(cols)]
    for cause, per in res.items():
        if "skipped" in per:
            lines.append(f"{cause:<8} skipped: {per['skipped']}")
            continue
        for ph in PHASES:
            label = CAUSES[cause].labels[ph]
            for d in DIRECTIONS:
                row = f"{cause:<8} {label:<24} {DIR_SHORT[d]:<4}"
                tot = {}
                for v in variants:
                    r = per.get(v)
                    if r is None or "skipped" in r or "failed" in r:
                        row += f" | {'(not run)':>15} {'':>20} {'':>3}"
                        continue
                    x = r["summary"][ph][d]
                    tot[v] = x["lost"]["mean"]
                    row += (f" | {_trip(x['lost'], 0):>15} {_trip(x['gap_ms'], 1):>20} "
                            f"{r['summary'][ph]['windows']:>3}")
                if "kernel" not in tot or "netfo" not in tot or None in tot.values():
                    rt = "-"
                elif tot["kernel"] == 0:
                    rt = "0/0" if tot["netfo"] == 0 else "x/0"     # kernel lost nothing, netfo some
                else:
                    rt = _n(tot["netfo"] / tot["kernel"], 2)
                row += f" | {rt:>6}"
                lines.append(row)
        lines.append("")
    tot = []
    for cause, r in doc.get("ratios", {}).items():
        m = r["mean_lost_per_cycle"]
        tot.append(f"{cause} {_n(m['netfo'], 1)} / {_n(m['kernel'], 1)} = "
                   f"{_n(r['all'], 2) if r['all'] is not None else '-'}" +
                   (f" (driver {_n(m['driver'], 1)})" if "driver" in m else ""))
    if tot:
        lines.append("A whole cycle (both phases and directions), mean lost netfo / kernel: " +
                     ", ".join(tot))
        lines.append("")
    # noise floor and netfo's own switch times
    lines.append("p50/p99/max: event = ms from the action to the kernel's netlink event for "
                 "ens11, as a listener in the guest heard it; switch = ms from that event to the "
                 "first guest frame that left by the new slave (tcpdump; the sender sends a burst "
                 "every ~1 ms), old = guest frames that left by the old slave after the event; "
                 "noise floor: longest gap in the settled part of each window:")
    for cause, per in res.items():
        if "skipped" in per:
            continue
        for v in variants:
            r = per.get(v)
            if r is None or "summary" not in r:
                if r and "failed" in r:
                    lines.append(f"  {cause:<8} {v:<7} FAILED: {r['failed']}")
                continue
            sw = "  ".join(f"{ph} {_trip(r['summary'][ph]['vf_event_heard_ms'], 1)} / "
                           f"{_trip(r['summary'][ph]['switch_ms'], 2)} / "
                           f"{_trip(r['summary'][ph]['old_slave_after_event'], 0)}" for ph in PHASES)
            nf = "  ".join(f"{DIR_SHORT[d]} "
                           f"{_trip(_merge_quiet(r, d), 1)}" for d in DIRECTIONS)
            reasons = ", ".join(f"{k} x{n}" for k, n in sorted(r["switch_reasons"].items()))
            lines.append(f"  {cause:<8} {v:<7} event / switch / old: {sw}   quiet gap {nf}")
            cpu = ", ".join(f"{b['cpu'].get('busy_pct', '-')} % busy" +
                            (f" ({b['cpu']['steal_pct']} % stolen)" if b["cpu"].get("steal_pct") else "")
                            for b in r["blocks"])
            lines.append(f"  {'':<8} {'':<7} switches logged: {reasons or 'none'}; CPUs during the "
                         f"cycles: {cpu}")
            bad = [f"{DIR_SHORT[d]} lost {x['lost_before_first_action']} before the first action"
                   for d, x in r["streams"].items() if x["lost_before_first_action"]]
            bad += [f"{DIR_SHORT[d]} receiver socket overflowed {x['socket_overflow']}"
                    for d, x in r["streams"].items() if x["socket_overflow"]]
            bad += [f"{DIR_SHORT[d]} {x['duplicates']} duplicates"
                    for d, x in r["streams"].items() if x["duplicates"]]
            late = {d: n for d, n in r["lost_after_settling"].items() if n}
            if late:
                bad.append("lost after netfo had settled (a stall, not the switch): " +
                           ", ".join(f"{DIR_SHORT[d]} {n}" for d, n in late.items()))
            if r["windows_with_steal_over_10pct"]:
                bad.append(f"{r['windows_with_steal_over_10pct']} window(s) with over 10 % of the "
                           "CPU time stolen by the hypervisor")
            for x in r["blocks"]:
                if x["others_namespaces"]:
                    o = x["others_namespaces"]
                    bad.append(f"block {x['block'] + 1}: others' namespaces were up meanwhile "
                               f"({', '.join(o[:4])}{', ...' if len(o) > 4 else ''})")
            for x in r.get("discarded_blocks", []):
                bad.append(f"block {x['block'] + 1} measured again: {x['cpu']['steal_pct']} % stolen "
                           f"(it had lost g→p {x['lost']['guest_to_peer']}, "
                           f"p→g {x['lost']['peer_to_guest']})")
            bad += r["errors"]
            for b in bad:
                lines.append(f"  {'':<8} {'':<7} note: {b}")
    return "\n".join(lines)


def _merge_quiet(r: dict, d: str) -> dict:
    xs = [c["quiet_gap_ms"][d] for c in r["cycles"]]
    return dist(xs, 2)


def ratios(res: dict) -> dict:
    out = {}
    for cause, per in res.items():
        if "skipped" in per or any(v not in per or "summary" not in per[v] for v in ("netfo", "kernel")):
            continue
        def mean(v, key="summary"):
            xs = [per[v][key][ph][d]["lost"]["mean"] for ph in PHASES for d in DIRECTIONS]
            return None if None in xs else sum(xs)

        def rt(x, y):
            return None if x is None or y is None else _r(ratio(x, y), 3)
        out[cause] = {ph: {d: rt(per["netfo"]["summary"][ph][d]["lost"]["mean"],
                                 per["kernel"]["summary"][ph][d]["lost"]["mean"])
                           for d in DIRECTIONS} for ph in PHASES}
        # a cycle's loss (away + back, both directions), mean over cycles
        out[cause]["all"] = rt(mean("netfo"), mean("kernel"))
        out[cause]["all_windows"] = rt(mean("netfo", "summary_all"), mean("kernel", "summary_all"))
        out[cause]["mean_lost_per_cycle"] = {v: _r(mean(v), 1) for v in VARIANTS
                                             if "summary" in per.get(v, {})}
    return out


# ------------------------------------------------------------------ plan and main

class Plan:
    """Seconds planned, for the time-left estimate."""

    def __init__(self, a: argparse.Namespace, segments: int):
        self.prefix, self.known, self.foreign = a.prefix, set(_other_namespaces(a.prefix)), set()
        self.setup = 1.6 + a.baseline / 1000
        self.cycle = 2 * (max(a.dwell, 60 + a.quiet) / 1000 + 0.02)
        self.teardown = 1.0 + a.rate * a.cycles * self.cycle / 4e5   # stopping, analysis
        self.total = segments * (a.blocks * (self.setup + self.teardown) + a.cycles * self.cycle) + 3.0

    def look(self) -> set:
        """Note network namespaces someone else made during the run (tests, other
        labs); returns those present now."""
        now = set(_other_namespaces(self.prefix)) - self.known
        self.foreign |= now
        return now


def parse(argv: Optional[list]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python3 -m bench.failover",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, help="away-and-back cycles per cause and variant "
                                               "(default 50; --quick 5)")
    ap.add_argument("--rate", type=float, default=20000, help="frames/s each way (default 20000)")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "failover.json"),
                    help="results file (default bench/failover.json)")
    ap.add_argument("--quick", action="store_true", help="5 cycles per cause (about a minute)")
    ap.add_argument("--causes", default=",".join(DEFAULT_CAUSES),
                    help=f"comma list of {','.join(CAUSES)} (default {','.join(DEFAULT_CAUSES)})")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma list of {','.join(VARIANTS)} (default both)")
    ap.add_argument("--blocks", type=int, help="split each cause's cycles into this many blocks, "
                    "variants in ABBA order, so drift in the machine's load hits both alike "
                    "(default 2; --quick 1)")
    ap.add_argument("--max-steal", type=float, default=5, metavar="PCT",
                    help="a block during which the hypervisor stole more than PCT %% of the CPU "
                         "time is measured again (default 5)")
    ap.add_argument("--retries", type=int,
                    help="times a block is measured again at most (default 2, --quick 0; "
                         "3x that per run)")
    ap.add_argument("--dwell", type=float, default=350, help="ms at least from one action to the "
                                                             "next (default 350)")
    ap.add_argument("--quiet", type=float, default=150, help="ms at least after netfo was seen "
                                                             "switched before the next action (150)")
    ap.add_argument("--guard", type=float, default=30, help="ms before an action that its window "
                                                            "starts (default 30)")
    ap.add_argument("--poll", type=float, default=20, help="ms between status polls (default 20)")
    ap.add_argument("--baseline", type=float, default=800, help="ms of steady streaming before "
                                                                "the first cycle (default 800)")
    ap.add_argument("--timeout", type=float, default=5, help="s to wait for a switch (default 5)")
    ap.add_argument("--netfo-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for `netfo up` in every variant (repeatable)")
    ap.add_argument("--prefix", default=f"fo{os.getpid() % 10000}", help="lab prefix")
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep netfo's logs (default: removed unless a segment failed)")
    a = ap.parse_args(argv)
    if a.cycles is None:
        a.cycles = 5 if a.quick else 50
    if a.retries is None:
        a.retries = 0 if a.quick else 2
    if a.blocks is None:
        a.blocks = 1 if a.quick else 2
    a.blocks = max(1, min(a.blocks, a.cycles))
    if a.cycles < 1 or a.rate <= 0:
        ap.error("--cycles must be >= 1 and --rate > 0")
    a.causes = [c for c in a.causes.split(",") if c]
    a.variants = [v for v in a.variants.split(",") if v]
    bad = [c for c in a.causes if c not in CAUSES] + [v for v in a.variants if v not in VARIANTS]
    if bad:
        ap.error(f"unknown {', '.join(bad)}: causes {','.join(CAUSES)}, variants {','.join(VARIANTS)}")
    return a


def _other_namespaces(prefix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir("/var/run/netns") if not n.startswith(prefix + "-"))
    except OSError:
        return []


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: Optional[list] = None) -> int:
    a = parse(argv)
    if os.geteuid() != 0:
        sys.exit("bench.failover: needs root (network namespaces): run it with sudo")
    absent = [t for t in ("ip", "bridge", "nft", "ping") if shutil.which(t) is None]
    if absent:
        sys.exit(f"bench.failover: {', '.join(absent)} not found: apt-get install iproute2 "
                 "nftables iputils-ping")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    notes, results = [], {}
    todo, pairs = [], 0           # (cause, variant, block, first cycle, cycles)
    sizes = [a.cycles // a.blocks + (1 if b < a.cycles % a.blocks else 0) for b in range(a.blocks)]
    for c in a.causes:
        cause = CAUSES[c]
        vs = [v for v in a.variants if v in cause.variants]
        for v in a.variants:
            if v not in vs:
                results.setdefault(c, {})[v] = {"skipped": "net_failover has no path probing: it "
                                                           "never leaves a black-holed VF"}
        pairs += len(vs)
        for b in range(a.blocks):            # ABBA: drift over the run hits both variants alike
            for v in (vs if b % 2 == 0 else vs[::-1]):
                todo.append((cause, v, b, 1 + sum(sizes[:b]), sizes[b]))
    for c in CAUSES:
        if c not in a.causes:
            results[c] = {"skipped": "not in --causes"}
    plan = Plan(a, pairs)
    progress = Progress(plan.total)
    progress.note(f"bench.failover: {a.cycles} cycles of each of "
                  f"{', '.join(sorted({f'{c.name}/{v}' for c, v, *_ in todo}, key=str))} "
                  f"in {len(todo)} blocks, {a.rate:,.0f} frames/s each way, about "
                  f"{_mmss(plan.total)} planned")
    others = _other_namespaces(a.prefix)
    if others:
        notes.append(f"{len(others)} other network namespaces existed at the start "
                     f"({', '.join(others[:6])}{', ...' if len(others) > 6 else ''}): "
                     "anything running in them competes for the CPUs")
    load0 = os.getloadavg()[0]
    lab = Lab(a.prefix, log=lambda *_: None)
    logdir = f"/tmp/netfo-failover-{a.prefix}"
    os.makedirs(logdir, exist_ok=True)
    t_start, wall = time.monotonic(), time.time()
    failed = False
    blocks: dict = {}
    discarded: dict = {}
    retries_left = a.retries * 3          # for the whole run: bounds its length
    try:
        try:
            lab.up()
            for cause, v, b, first, n in todo:
                per = results.setdefault(cause.name, {})
                if "failed" in per.get(v, {}):
                    continue
                for attempt in range(a.retries + 1):
                    seg = Segment(lab, cause, v, b, first, n, a, progress, logdir, plan)
                    try:
                        got = seg.run()
                    except (BenchError, LabError) as e:
                        failed = True
                        progress.note(f"{cause.name}/{v} FAILED: {e}")
                        per[v] = {"failed": str(e), "netfo_log": seg.logfile}
                        break
                    steal = got["cpu"].get("steal_pct", 0)
                    if steal <= a.max_steal or attempt == a.retries or retries_left <= 0:
                        blocks.setdefault((cause.name, v), []).append(got)
                        break
                    retries_left -= 1
                    discarded.setdefault((cause.name, v), []).append(
                        {"block": b, "cpu": got["cpu"],
                         "lost": {d: sum(c["lost"][d] for c in got["cycles"]) for d in DIRECTIONS}})
                    progress.note(f"{cause.name}/{v} block {b + 1}: the hypervisor stole {steal} % of "
                                  f"the CPU time (over --max-steal {a.max_steal:g}): measuring it again")
                    plan.total += plan.setup + plan.teardown + n * plan.cycle
                if "failed" in per.get(v, {}):
                    continue
                if len(blocks[(cause.name, v)]) == a.blocks:
                    per[v] = merge([*VARIANTS[v], *cause.netfo_args, *a.netfo_arg],
                                   blocks[(cause.name, v)], a.max_steal)
                    per[v]["discarded_blocks"] = discarded.get((cause.name, v), [])
        finally:
            with shielded():
                lab.down()
    except KeyboardInterrupt:
        if not a.keep_logs:
            shutil.rmtree(logdir, ignore_errors=True)
        print("\nbench.failover: interrupted; lab removed", file=sys.stderr)
        return 130
    except LabError as e:
        print(f"bench.failover: {e}", file=sys.stderr)
        return 1
    took = time.monotonic() - t_start
    if not (a.keep_logs or failed):
        shutil.rmtree(logdir, ignore_errors=True)
    plan.look()
    if plan.foreign:
        later = sorted(plan.foreign)
        notes.append(f"other network namespaces appeared during the run ({', '.join(later[:6])}"
                     f"{', ...' if len(later) > 6 else ''}): someone else used the machine "
                     "meanwhile; timings may be disturbed")
    # results in the order causes were asked for, skipped ones last
    ordered = {c: results[c] for c in [*a.causes, *results] if c in results}
    from .report import machine
    doc = {"version": 1, "machine": machine(), "started": wall, "seconds": round(took, 1),
           "loadavg_1min": {"start": round(load0, 2), "end": round(os.getloadavg()[0], 2)},
           "command": "python3 -m bench.failover " + " ".join(argv if argv is not None else sys.argv[1:]),
           "settings": {"rate": a.rate, "cycles": a.cycles, "blocks": a.blocks,
                        "max_steal_pct": a.max_steal, "retries": a.retries, "dwell_ms": a.dwell, "quiet_ms": a.quiet,
                        "guard_ms": a.guard, "poll_ms": a.poll, "baseline_ms": a.baseline,
                        "causes": a.causes, "variants": {v: VARIANTS[v] for v in a.variants},
                        "netfo_arg": a.netfo_arg, "quick": a.quick,
                        "percentiles": "linear interpolation between closest ranks"},
           "notes": notes, "results": ordered, "ratios": ratios(ordered)}
    print(table(doc))
    print(f"\nrun took {_mmss(took)} ({took:.0f} s)")
    for n in notes:
        print(f"note: {n}")
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"results: {a.json}")
    if a.keep_logs or failed:
        print(f"netfo logs: {logdir}/")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
