"""`netfo demo`: the kernel document's live migration, with traffic, in one command.

What it does, on a fresh machine (root):

1. builds the namespace lab (`netfo lab`, prefix "demo" unless --prefix) and
   runs `netfo up ens10` in its guest;
2. starts steady traffic through netfo: a sequence-numbered UDP stream each
   way between the guest (192.168.12.53) and the peer (192.168.12.1), --rate
   frames/s each (default 10,000), and one TCP connection doing a ping-pong
   every 10 ms (the tools are `python -m netfo.stream ...`); a watcher in the
   guest samples `netfo status` every 50 ms and records the guest's link and
   neighbour events (netlink);
3. after 1 s of steady traffic runs the document's two migration scripts
   (`Lab.migrate()`: the seven steps), timing each;
4. streams 1.5 s more, then prints the timeline: each step's time and
   duration, the frames lost in each direction while it ran (and until the
   next step), which slave transmitted meanwhile (from netfo's log, which
   stamps each switch to the ms; the status samples if the log is not
   readable), the guest's events interleaved with netfo's log, per-stream
   totals, the longest gap, the TCP connection's fate, notes that explain
   the larger losses, and a verdict;
5. removes everything (the tools, netfo down, the lab, netfo's log), also on
   Ctrl-C, SIGTERM and errors. With --keep, a run that got to its verdict
   leaves the lab and netfo running (`netfo lab --prefix P down` removes
   them); an interrupted or failed run is always removed.

Times are CLOCK_MONOTONIC, one clock for every namespace, so the receive
times the tools record compare directly with the step times taken here.
Frame `seq` of a stream is due at `start + seq / rate`; a lost frame is
counted in the interval where it was due: before the first step, step i (from
its start to the start of step i+1; the last step to its end), or after the
migration.

Verdict, "connectivity survived the migration" (exit 0) when all hold, else
exit 1:
  * both streams still deliver at the end: each direction received at least
    half of the frames due in its last 0.5 s (a trickle or nothing fails);
  * no direction was cut for more than 2 s: no gap longer than that between
    two received frames, nor between the last one and the end of the stream.
    One lost ARP/ND request costs the guest about 1 s (the kernel resends
    after retrans_time_ms, 1000 by default), which a migration that wipes
    the neighbour cache can cost; a second lost one, or a path that stays
    broken, fails;
  * the TCP connection opened before the first step is the same, unbroken
    connection after the last one and completed a round trip after it.
The amount of loss is reported, not judged: how much is acceptable depends on
the rate and on how long the lab's steps take (tests/test_demo.py derives a
bound from both).

--json prints one object (times in s from the stream start, "version": 1):
  steps: [{n, command (the document's line), detail (what the lab did),
    start_s, duration_ms, transmitting (slaves in turn), transmitting_after,
    lost: {guest_to_peer, peer_to_guest}}]; migration_ms; transmitting_before;
    transmitting_after (after the last step);
  directions: {guest_to_peer, peer_to_guest}: sent, received, lost, lost_pct,
    duplicates, lost_by_step {before, 1..7, after}, max_gap_ms, max_gap_at_s,
    longest_loss_run(_at_s), final_window, socket_overflow, send_errors,
    sender_max_lag_ms, max_latency_ms;
  tcp: connected_before_first_step, error, round_trips,
    round_trips_after_last_step, max_rtt_ms, longest_wait_ms, survived;
  transmitting_changes [{t_s, active}] and transmitting_source; the raw
    transmitting_samples [{t_s, active, master_carrier}]; guest_events
    [{t_s, source: netlink|netfo, what}]; guest_arp_retrans_ms; notes;
  rule (the verdict's thresholds), survived, verdict.
"""
from __future__ import annotations

import bisect
import json
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ... import spawn
from ...errors import NetfoError

IFNAME = "ens10"
PRE_S, POST_S = 1.0, 1.5           # steady traffic before the first / after the last step
WATCH_INTERVAL = 0.05
TCP_INTERVAL = 0.01
MAX_GAP_S = 2.0                    # the verdict's limit on a gap (see the module doc)
FINAL_WINDOW_S = 0.5               # "still delivering": the streams' last 0.5 s ...
MIN_FINAL_DELIVERED = 0.5          # ... delivered at least half their frames
PORT_G2P, PORT_P2G, PORT_TCP = 5001, 5002, 5003
DIRECTIONS = (("guest_to_peer", "guest→peer"), ("peer_to_guest", "peer→guest"))
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) netfo\[[^\]]*\] \w+ (.*)$")
NETNS_DIR = "/var/run/netns"


class Interrupted(KeyboardInterrupt):
    """SIGTERM/SIGHUP, turned into the same path as Ctrl-C."""


# ---------------------------------------------------------------- tools

class Tool:
    """One `python -m netfo.stream ...` inside a namespace; its JSON lines are
    read by a thread (the watcher's keep coming while the demo runs)."""

    who = "demo: "              # how errors name the caller

    def __init__(self, name: str, ns: str, *args: str):
        self.name = name
        self.samples: list[dict] = []
        self.events: list[dict] = []
        # A session of its own: the terminal's Ctrl-C reaches only the demo,
        # which stops the tools itself (in order, collecting their results).
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *spawn.python("netfo.lab.stream", *args)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, cwd=spawn.NEUTRAL_CWD)
        self.lines: "queue.Queue[Optional[dict]]" = queue.Queue()
        self.stderr = ""
        self.result: Optional[dict] = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if self.on_event(obj):
                continue
            if obj.get("event") == "result":
                self.result = obj
            self.lines.put(obj)
        self.lines.put(None)

    def on_event(self, obj: dict) -> bool:
        """A watcher's sample or netlink event: keep it (True), or let it
        through as an ordinary line (False)."""
        if obj.get("event") == "sample":
            self.samples.append(obj)
            return True
        if obj.get("event") in ("link", "neigh", "overrun"):
            self.events.append(obj)
            return True
        return False

    def _read_err(self) -> None:
        self.stderr = self.proc.stderr.read()

    def ready(self, timeout: float = 10) -> dict:
        try:
            obj = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise NetfoError(f"{self.who}{self.name} did not start within {timeout:.0f} s") from None
        if obj is None or obj.get("event") != "ready" or obj.get("error"):
            try:
                self.proc.wait(5)           # for its stderr
            except subprocess.TimeoutExpired:
                pass
            why = (obj or {}).get("error") or (self.stderr.strip().splitlines() or ["no output"])[-1]
            raise NetfoError(f"{self.who}{self.name} failed to start: {why}")
        return obj

    def stop(self, timeout: float = 5) -> Optional[dict]:
        """SIGTERM, wait for its result line (a receiver's is large); SIGKILL
        if it does not end."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout)               # it has read the last line at EOF
        return self.result


# ---------------------------------------------------------------- steps

@dataclass
class Step:
    n: int
    command: str            # the document's script line, e.g. "source: virsh ..."
    detail: str = ""        # what the lab did, from its log line
    start: float = 0.0      # monotonic
    end: float = 0.0


@dataclass
class Run:
    """Everything measured, in monotonic seconds; `analyse` makes the report."""
    prefix: str
    rate: float
    streams: dict = field(default_factory=dict)    # direction -> (sender result, receiver result)
    steps: list = field(default_factory=list)
    samples: list = field(default_factory=list)    # watcher samples
    events: list = field(default_factory=list)     # guest link/neighbour events
    netfo_log: list = field(default_factory=list)  # (monotonic, message) from netfo's daemon log
    tcp: Optional[dict] = None
    arp_retrans_ms: Optional[int] = None           # the guest's ARP retransmit interval
    started: float = 0.0
    ended: float = 0.0


class Demo:
    def __init__(self, prefix: str = "demo", rate: float = 10000, keep: bool = False,
                 wire_like: bool = False, progress: Callable[[str], None] = print):
        from ..topology import Lab
        self.say = progress
        self.rate, self.keep = rate, keep
        self.lab = Lab(prefix, wire_like=wire_like, log=self._lab_log)
        self.tools: list[Tool] = []
        self.netfo_up = False
        self.built = False                        # the lab is ours to remove
        self.daemon_log: Optional[str] = None
        self.recording: Optional[list] = None     # (monotonic, lab log line) while migrating
        self.t0: Optional[float] = None
        self.netfo_log: list = []

    # -- progress
    def _lab_log(self, line: str) -> None:
        now = time.monotonic()
        if self.recording is not None:
            self.recording.append((now, line))
            n = len(self.recording)
            rel = f"+{now - self.t0:.3f} s  " if self.t0 else ""
            line = line.split("] ", 1)[-1]
            self.say(f"  {rel}step {n}: {line}")
        else:
            self.say(f"  {line.split('] ', 1)[-1]}")

    def _tool(self, name: str, role: str, *args: str) -> Tool:
        t = Tool(name, self.lab.namespaces[role], *args)
        self.tools.append(t)
        return t

    # -- the run
    def run(self) -> Run:
        from ..topology import GUEST_IP4, PEER_IP4, LabError
        lab = self.lab
        if os.geteuid() != 0:
            raise NetfoError("netfo demo needs root (it builds network namespaces): run it with sudo")
        if lab.exists():
            raise NetfoError(f"lab {lab.prefix!r} already exists: remove it with "
                             f"`netfo lab --prefix {lab.prefix} down` or pick another --prefix")
        run = Run(lab.prefix, self.rate)
        try:
            self.say(f"netfo demo: building the lab {lab.prefix!r} (namespaces "
                     f"{', '.join(lab.namespaces.values())})")
            lab.up()                    # on failure it removes what it made
            self.built = True
            # netfo names its log after the network namespace (control.run_path);
            # known now, so that even a failed `netfo up` leaves no file behind.
            from ... import control
            ino = os.stat(os.path.join(NETNS_DIR, lab.guest)).st_ino
            self.daemon_log = os.path.join(control.RUN_DIR, f"net{ino}-{IFNAME}.log")
            self._netfo_up()
            self._warm_up(GUEST_IP4, PEER_IP4)
            p = lab.run("guest", "sysctl", "-n", f"net.ipv4.neigh.{IFNAME}.retrans_time_ms", check=False)
            run.arp_retrans_ms = int(p.stdout.strip()) if p.stdout.strip().isdigit() else None

            watch = self._tool("the status watcher", "guest", "watch", IFNAME,
                               "--interval", str(WATCH_INTERVAL))
            echo = self._tool("the TCP echo server", "peer", "tcp-echo", PEER_IP4, str(PORT_TCP))
            rx = {"guest_to_peer": self._tool("the receiver in the peer", "peer", "recv", str(PORT_G2P)),
                  "peer_to_guest": self._tool("the receiver in the guest", "guest", "recv", str(PORT_P2G))}
            for t in (watch, echo, *rx.values()):
                t.ready()
            ping = self._tool("the TCP client", "guest", "tcp-ping", PEER_IP4, str(PORT_TCP),
                              "--interval", str(TCP_INTERVAL))
            ping.ready()
            rate = f"{self.rate:g}"
            tx = {"guest_to_peer": self._tool("the sender in the guest", "guest", "send",
                                              PEER_IP4, str(PORT_G2P), "--rate", rate),
                  "peer_to_guest": self._tool("the sender in the peer", "peer", "send",
                                              GUEST_IP4, str(PORT_P2G), "--rate", rate)}
            starts = [t.ready()["start"] for t in tx.values()]
            self.t0 = run.started = min(starts)
            self.say(f"  streaming {self.rate:,.0f} frames/s each way, guest {GUEST_IP4} <-> peer "
                     f"{PEER_IP4}, and a TCP ping-pong every {TCP_INTERVAL * 1000:.0f} ms")
            self._sleep_checked(PRE_S, tx, rx)

            self.say(f"  +{time.monotonic() - self.t0:.3f} s  migrating (the document's two scripts):")
            self.recording = rec = []
            try:
                done = lab.migrate()
            finally:
                self.recording = None
            for i, ((command, secs), (logged, line)) in enumerate(zip(done, rec), 1):
                detail = line.split("] ", 1)[-1].split(": ", 1)[-1].rsplit(" (", 1)[0]
                run.steps.append(Step(i, command, detail, logged - secs, logged))

            self.say(f"  +{time.monotonic() - self.t0:.3f} s  migrated; streaming {POST_S:g} s more")
            self._sleep_checked(POST_S, tx, rx)
            for d, t in tx.items():
                if t.stop() is None:
                    raise NetfoError(f"demo: {t.name} gave no result: {t.stderr.strip()[-200:]}")
            time.sleep(0.2)                       # frames still in flight
            run.ended = time.monotonic()
            for d in tx:
                if rx[d].stop() is None:
                    raise NetfoError(f"demo: {rx[d].name} gave no result: {rx[d].stderr.strip()[-200:]}")
                run.streams[d] = (tx[d].result, rx[d].result)
            run.tcp = ping.stop()
            echo.stop()
            watch.stop()
            run.samples = list(watch.samples)
            run.events = list(watch.events)
            return run
        except LabError as e:
            raise NetfoError(str(e)) from None

    def _netfo_up(self) -> None:
        self.say(f"  netfo up {IFNAME} (in {self.lab.guest})")
        p = subprocess.run(["ip", "netns", "exec", self.lab.guest, *spawn.netfo("up", IFNAME)],
                           capture_output=True, text=True, timeout=60, cwd=spawn.NEUTRAL_CWD)
        out = (p.stdout + p.stderr).strip()
        if "daemon log: " in out:
            self.daemon_log = out.split("daemon log: ", 1)[1].split(")", 1)[0]
        self.netfo_up = True          # tried: `netfo down` at teardown is harmless if it failed
        if p.returncode:
            raise NetfoError(f"demo: netfo up {IFNAME} failed: "
                             f"{(out.splitlines() or ['exit %d' % p.returncode])[-1]}")
        self.say(f"  {(out.splitlines() or [f'netfo: {IFNAME} is up'])[-1]}")

    def _warm_up(self, guest_ip: str, peer_ip: str) -> None:
        """Resolve neighbours both ways first: a stream that starts on an
        unresolved neighbour loses frames to ARP, which is not netfo's doing."""
        for role, dst in (("guest", peer_ip), ("peer", guest_ip)):
            p = self.lab.run(role, "ping", "-c", "1", "-w", "5", "-q", dst, check=False, timeout=15)
            if p.returncode:
                raise NetfoError(f"demo: no connectivity through netfo before migrating "
                                 f"({role} cannot ping {dst})")

    def _sleep_checked(self, seconds: float, *groups: dict) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))
            for g in groups:
                for t in g.values():
                    if t.proc.poll() is not None:
                        raise NetfoError(f"demo: {t.name} exited early: "
                                         f"{(t.stderr.strip().splitlines() or ['no output'])[-1]}")

    # -- teardown
    def stop_tools(self) -> None:
        for t in self.tools:
            try:
                t.stop(timeout=3)
            except Exception:
                pass
        self.tools = []

    def read_daemon_log(self) -> list:
        """netfo's log lines since the stream started, as (monotonic, message).

        The daemon stamps lines with the wall clock to the millisecond; the
        offset between the two clocks, taken now, maps them onto this run's
        timeline. Best effort: lines in another format are skipped."""
        if not self.daemon_log or self.t0 is None:
            return []
        offset = time.time() - time.monotonic()
        out = []
        try:
            with open(self.daemon_log, errors="replace") as f:
                for line in f:
                    m = LOG_LINE.match(line.rstrip("\n"))
                    if not m:
                        continue
                    wall = time.mktime(time.strptime(m[1], "%Y-%m-%d %H:%M:%S")) + int(m[2]) / 1000
                    if wall - offset >= self.t0 - 0.001:
                        out.append((wall - offset, m[3]))
        except (OSError, ValueError, OverflowError):
            pass
        return out

    def teardown(self, keep: bool) -> None:
        """Stop the tools; unless keep, netfo down and remove the lab."""
        self.stop_tools()
        self.netfo_log = self.read_daemon_log()
        if keep or not self.built:
            return
        if self.netfo_up and self.lab.exists():
            subprocess.run(["ip", "netns", "exec", self.lab.guest, *spawn.netfo("down", IFNAME)],
                           capture_output=True, text=True, timeout=60, cwd=spawn.NEUTRAL_CWD)
        self.lab.down()
        if self.daemon_log:
            try:
                os.unlink(self.daemon_log)      # named after a namespace inode that is gone now
            except OSError:
                pass


# ---------------------------------------------------------------- analysis

def _received(tx: dict, rx: dict) -> tuple:
    """(got, duplicates): got[seq] is 1 for each sequence number that arrived."""
    sent = tx["sent"]
    got = bytearray(sent)
    dups = 0
    for s in rx["seqs"]:
        if s < sent:
            if got[s]:
                dups += 1
            got[s] = 1
    return got, dups


def _direction(tx: dict, rx: dict, bounds: list, names: list, t0: float) -> dict:
    """Loss, gaps and per-interval loss of one stream."""
    rate, start, sent = tx["rate"], tx["start"], tx["sent"]
    times = rx["times"]
    got, dups = _received(tx, rx)
    received = sum(got)
    lost_by = {n: 0 for n in names}
    for s in range(sent):
        if not got[s]:
            lost_by[names[bisect.bisect_right(bounds, start + s / rate)]] += 1
    # Longest gap between two receptions, and from the last one to the end
    # of the stream: a stream that stopped counts as one long gap.
    gap, gap_at, prev = 0.0, start, None
    for t in times:
        if prev is not None and t - prev > gap:
            gap, gap_at = t - prev, prev
        prev = t
    last_due = start + (sent - 1) / rate
    if prev is None:
        gap, gap_at = last_due - start, start
    elif last_due - prev > gap:
        gap, gap_at = last_due - prev, prev
    run = best = 0
    best_end = -1
    for s in range(sent):
        run = 0 if got[s] else run + 1
        if run > best:
            best, best_end = run, s
    final_from = max(0, sent - int(FINAL_WINDOW_S * rate))
    return {
        "sent": sent, "received": received, "duplicates": dups, "lost": sent - received,
        "lost_pct": round(100.0 * (sent - received) / sent, 3) if sent else 0.0,
        "lost_by_step": lost_by,
        "max_gap_ms": round(gap * 1000, 2), "max_gap_at_s": round(gap_at - t0, 4),
        "longest_loss_run": best,
        "longest_loss_run_at_s": round(start + (best_end - best + 1) / rate - t0, 4) if best else None,
        "final_window": {"seconds": FINAL_WINDOW_S, "sent": sent - final_from,
                         "received": sum(got[final_from:])},
        "socket_overflow": rx.get("socket_overflow", 0),
        "send_errors": tx.get("send_errors", {}),
        "sender_max_lag_ms": tx.get("max_lag_ms", 0.0),
        "max_latency_ms": rx.get("max_latency_ms", 0.0),
    }


def _transmit_changes(run: Run) -> tuple:
    """(initial, [(monotonic t, active)], source): which slave transmits, over time.

    netfo logs each switch ("transmit via standby (...)") with a millisecond
    stamp; the status samples (every 50 ms) are the fallback and give the
    state at the stream start."""
    good = [s for s in run.samples if "error" not in s]
    initial = next((s.get("active") for s in good if s["t"] >= run.started), None)
    if initial is None and good:
        initial = good[0].get("active")
    changes = []
    for t, msg in run.netfo_log:
        m = re.match(r"transmit via (\w+)", msg)
        if m and run.started <= t <= run.ended:
            changes.append((t, None if m[1] == "None" else m[1]))
    if changes:
        return initial, changes, "netfo's log"
    prev = initial
    for s in good:
        if s["t"] >= run.started and s.get("active") != prev:
            changes.append((s["t"], s.get("active")))
            prev = s.get("active")
    return initial, changes, f"netfo status every {WATCH_INTERVAL * 1000:.0f} ms"


def _states(initial, changes: list, t_from: float, t_to: float) -> list:
    """Successive transmitting slaves in [t_from, t_to), starting with the one
    in force at t_from."""
    cur = initial
    for t, a in changes:
        if t < t_from:
            cur = a
    seq = [cur or "none"]
    for t, a in changes:
        if t_from <= t < t_to and (a or "none") != seq[-1]:
            seq.append(a or "none")
    return seq


def _guest_events(run: Run) -> list:
    """Guest netlink events worth a line (a link appearing, vanishing, going
    up/down, gaining/losing carrier; the peer's ARP/ND entry on the master
    changing state) and netfo's own log lines, from the stream start on."""
    from ..topology import PEER_IP4, PEER_IP6
    out, last, neigh = [], {}, {}
    for e in sorted(run.events, key=lambda e: e["t"]):
        what = None
        if e["event"] == "link":
            idx = e["index"]
            if e["gone"]:
                what = f"{e['name']} deleted"
                last.pop(idx, None)
            else:
                state = (e["up"], e["carrier"])
                prev = last.get(idx)
                last[idx] = state
                if e.get("initial"):
                    continue
                if prev is None:
                    what = (f"{e['name']} appeared ({'up' if e['up'] else 'down'}, "
                            f"{'carrier' if e['carrier'] else 'no carrier'})")
                elif prev != state:
                    parts = []
                    if prev[0] != state[0]:
                        parts.append("up" if state[0] else "down")
                    if prev[1] != state[1]:
                        parts.append("carrier on" if state[1] else "carrier off")
                    what = f"{e['name']} {', '.join(parts)}"
        elif e["dst"] in (PEER_IP4, PEER_IP6) and e["dev"] == IFNAME:
            if neigh.get(e["dst"]) != e["state"]:
                neigh[e["dst"]] = e["state"]
                what = f"{'ARP' if ':' not in e['dst'] else 'ND'} entry of the peer {e['dst']}: {e['state']}"
        if what and run.started <= e["t"] <= run.ended:
            out.append({"t_s": round(e["t"] - run.started, 4), "source": "netlink", "what": what})
    logged = [(t, msg) for t, msg in run.netfo_log if run.started <= t <= run.ended]
    if any(msg.startswith(f"{IFNAME}: carrier ") for _, msg in logged):
        # netfo's own lines say when it set the master's carrier; the netlink
        # echo of that, a moment later, would only repeat them.
        out = [e for e in out if not e["what"].startswith(f"{IFNAME} carrier ")]
    out += [{"t_s": round(t - run.started, 4), "source": "netfo", "what": msg} for t, msg in logged]
    out.sort(key=lambda e: e["t_s"])
    return out


def _arp_outages(run: Run) -> list:
    """(flushed, resolved) monotonic times of the guest's ARP entry of the peer."""
    from ..topology import PEER_IP4
    out, deleted = [], None
    for e in sorted(run.events, key=lambda e: e["t"]):
        if e["event"] != "neigh" or e["dst"] != PEER_IP4 or e["dev"] != IFNAME:
            continue
        if e["state"] in ("DELETED", "FAILED") and deleted is None:
            deleted = e["t"]
        elif e["state"] == "REACHABLE" and deleted is not None:
            if run.started <= deleted <= run.ended:
                out.append((deleted, e["t"]))
            deleted = None
    return out


def _carrier_gaps(run: Run) -> list:
    """(off, on) monotonic times of the master's carrier: from netfo's log,
    else from the guest's netlink events (which lag it by a few ms)."""
    out, off = [], None
    log = [(t, m) for t, m in run.netfo_log if m.startswith(f"{IFNAME}: carrier ")]
    events = log or [(e["t"], f"{IFNAME}: carrier {'on' if e['carrier'] else 'off'}")
                     for e in sorted(run.events, key=lambda e: e["t"])
                     if e["event"] == "link" and e["name"] == IFNAME and not e["gone"]
                     and not e.get("initial")]
    for t, m in events:
        if m.endswith(" off") and off is None:
            off = t
        elif m.endswith(" on") and off is not None:
            if run.started <= off <= run.ended:
                out.append((off, t))
            off = None
    return out


def _ready_slaves(run: Run, at: float) -> list:
    """[(name, since)] of the slaves that, per the guest's netlink events, were
    up with carrier at `at`. The watcher stamps an event when it reads it, a
    few ms late under load: this errs towards "none was ready"."""
    from ..topology import VF_IF
    state: dict = {}
    for e in sorted(run.events, key=lambda e: e["t"]):
        if e["event"] != "link" or e["t"] > at or e["name"] not in (VF_IF, IFNAME + "nsby"):
            continue
        ok = not e["gone"] and e["up"] and e["carrier"]
        if not ok:
            state.pop(e["name"], None)
        elif e["name"] not in state:
            state[e["name"]] = e["t"]
    return sorted(state.items(), key=lambda kv: kv[1])


def _notes(run: Run, directions: dict) -> list:
    """Plain-language explanations of what the events show about the losses."""
    from ..topology import PEER_IP4
    notes = []
    for off, on in _carrier_gaps(run):
        ready = _ready_slaves(run, off)
        if ready:
            why = (f"yet {' and '.join(f'{n} (up with carrier since {t - run.started:.4f} s)' for n, t in ready)}"
                   " could transmit: netfo acted on an old state of it")
        else:
            why = "no slave could transmit, and netfo (like net_failover) turns the master's carrier off then"
        notes.append(f"the master {IFNAME} had no carrier for {(on - off) * 1000:.1f} ms from "
                     f"{off - run.started:.4f} s: {why}")
    for deleted, resolved in _arp_outages(run):
        wait = resolved - deleted
        if wait > 0.1:
            g = directions["guest_to_peer"]
            refused = sum(g["send_errors"].values())
            notes.append(
                f"the guest kernel flushed its ARP entry of the peer {PEER_IP4} at "
                f"{deleted - run.started:.3f} s (a carrier loss on {IFNAME} does that) and had it "
                f"again only {wait * 1000:.0f} ms later: its first ARP request was lost, the next "
                f"goes out after net.ipv4.neigh.{IFNAME}.retrans_time_ms "
                f"({run.arp_retrans_ms if run.arp_retrans_ms is not None else '?'} ms); "
                f"meanwhile guest→peer frames waited in the ARP queue"
                + (f" and the sender's socket refused {refused:,}" if refused else ""))
    return notes


def analyse(run: Run) -> dict:
    """The report (what --json prints); times in seconds from the stream start."""
    t0 = run.started
    steps = run.steps
    last_end = steps[-1].end if steps else run.ended
    names = ["before"] + [str(s.n) for s in steps] + ["after"]
    bounds = [s.start for s in steps] + [last_end]
    directions = {key: _direction(*run.streams[key], bounds, names, t0) for key, _ in DIRECTIONS}
    initial, changes, source = _transmit_changes(run)
    ends = [s.start for s in steps[1:]] + [last_end]
    step_rows = []
    for s, nxt in zip(steps, ends):
        tr = _states(initial, changes, s.start, nxt)
        step_rows.append({
            "n": s.n, "command": s.command, "detail": s.detail,
            "start_s": round(s.start - t0, 4), "duration_ms": round((s.end - s.start) * 1000, 2),
            "transmitting": tr, "transmitting_after": tr[-1],
            "lost": {k: directions[k]["lost_by_step"][str(s.n)] for k, _ in DIRECTIONS},
        })
    first = steps[0].start if steps else run.ended

    tcp = run.tcp or {}
    done = tcp.get("done", [])
    tcp_rep = {
        "connected_before_first_step": bool(tcp.get("connected_at")) and tcp["connected_at"] < first,
        "error": tcp.get("error") if tcp else "no result",
        "round_trips": tcp.get("exchanges", 0),
        "round_trips_after_last_step": sum(1 for t in done if t > last_end),
        "max_rtt_ms": max(tcp.get("rtt_ms") or [0.0]),
        "longest_wait_ms": round(1000 * max([b - a for a, b in zip(done, done[1:])] or [0.0]), 2),
    }
    tcp_rep["survived"] = (tcp_rep["connected_before_first_step"] and tcp_rep["error"] is None
                           and tcp_rep["round_trips_after_last_step"] > 0)

    reasons = []
    for key, label in DIRECTIONS:
        d = directions[key]
        f = d["final_window"]
        if f["sent"] == 0 or f["received"] < MIN_FINAL_DELIVERED * f["sent"]:
            reasons.append(f"{label} delivered only {f['received']:,} of the {f['sent']:,} frames "
                           f"of its last {FINAL_WINDOW_S:g} s")
        if d["max_gap_ms"] > MAX_GAP_S * 1000:
            reasons.append(f"{label} was cut for {d['max_gap_ms'] / 1000:.2f} s "
                           f"(more than {MAX_GAP_S:g} s)")
    if not tcp_rep["survived"]:
        reasons.append("the TCP connection did not survive ("
                       f"{tcp_rep['error'] or 'no round trip after the last step'})")
    g, p = directions["guest_to_peer"], directions["peer_to_guest"]
    total = g["sent"] + p["sent"]
    gap = max(g["max_gap_ms"], p["max_gap_ms"])
    if reasons:
        verdict = "connectivity did NOT survive the migration: " + "; ".join(reasons)
    else:
        verdict = (f"connectivity survived the migration: lost {g['lost']:,} guest→peer / "
                   f"{p['lost']:,} peer→guest frames of {total:,}, longest gap {gap:.1f} ms; "
                   f"the TCP connection stayed open ({tcp_rep['round_trips']:,} round trips)")
    return {
        "version": 1, "prefix": run.prefix, "rate": run.rate,
        "duration_s": round(run.ended - t0, 3),
        "migration_ms": round((last_end - first) * 1000, 2) if steps else 0.0,
        "steps": step_rows,
        "transmitting_before": _states(initial, changes, t0, first),
        "transmitting_after": _states(initial, changes, last_end, run.ended),
        "directions": directions, "tcp": tcp_rep,
        "transmitting_source": source,
        "transmitting_changes": [{"t_s": round(t - t0, 4), "active": a} for t, a in changes],
        "transmitting_samples": [{"t_s": round(s["t"] - t0, 4), "active": s.get("active"),
                                  "master_carrier": s.get("carrier")}
                                 for s in run.samples if "error" not in s],
        "guest_events": _guest_events(run),
        "guest_arp_retrans_ms": run.arp_retrans_ms,
        "notes": _notes(run, directions),
        "rule": {"max_gap_s": MAX_GAP_S, "final_window_s": FINAL_WINDOW_S,
                 "min_final_delivered": MIN_FINAL_DELIVERED},
        "survived": not reasons, "verdict": verdict,
    }


# ---------------------------------------------------------------- output

def _short(cmd: str) -> str:
    """'source: virsh domif-setlink ...' -> 'src  virsh domif-setlink ...'"""
    side, _, c = cmd.partition(": ")
    return f"{ {'source': 'src', 'destination': 'dst'}.get(side, side)}  {c}"


def format_report(rep: dict) -> str:
    g, p = rep["directions"]["guest_to_peer"], rep["directions"]["peer_to_guest"]
    w = max([len(_short(s["command"])) for s in rep["steps"]] + [20])
    out = [f"Timeline: t = 0 at the stream start, {rep['rate']:,.0f} frames/s each way; "
           "a lost frame counts in the row where it was due", ""]
    out.append(f"  {'t (s)':>7}  {'took':>8}  {'#':>1}  {'step (the document’s scripts)':{w}}  "
               f"{'lost g→p':>8}  {'lost p→g':>8}  transmitting")

    def row(t: float, took: str, n: str, what: str, key: str, states: list) -> str:
        return (f"  {t:7.3f}  {took:>8}  {n:>1}  {what:{w}}  {g['lost_by_step'][key]:>8,}  "
                f"{p['lost_by_step'][key]:>8,}  {' → '.join(states)}")
    out.append(row(0.0, "", "", "steady traffic", "before", rep["transmitting_before"]))
    for s in rep["steps"]:
        out.append(row(s["start_s"], f"{s['duration_ms']:.1f} ms", str(s["n"]), _short(s["command"]),
                       str(s["n"]), s["transmitting"]))
    if rep["steps"]:
        last = rep["steps"][-1]
        out.append(row(last["start_s"] + last["duration_ms"] / 1000, "", "", "after the migration",
                       "after", rep["transmitting_after"]))
    out.append(f"  {rep['duration_s']:7.3f}  {'':8}  {'':1}  end of the streams")
    out.append(f"  (7 steps in {rep['migration_ms']:.1f} ms; the transmitting slave from "
               f"{rep['transmitting_source']}; a row's time and losses run until the next row)")
    if rep["guest_events"]:
        ev = [(e["t_s"], 1, ("netfo: " if e["source"] == "netfo" else "") + e["what"])
              for e in rep["guest_events"]]
        ev += [(s["start_s"], 0, f"── step {s['n']}: {_short(s['command'])}") for s in rep["steps"]]
        out += ["", "In the guest, as it happened (netlink events; netfo's log):"]
        out += [f"  {t:7.4f}  {what}" for t, _, what in sorted(ev)]
    out += ["", "Streams:"]
    for key, label in DIRECTIONS:
        d = rep["directions"][key]
        extra = []
        if d["socket_overflow"]:
            extra.append(f"{d['socket_overflow']:,} dropped by the receiving socket")
        if d["send_errors"]:
            extra.append("refused by the sender's stack: " +
                         ", ".join(f"{k} {v:,}" for k, v in d["send_errors"].items()))
        if d["duplicates"]:
            extra.append(f"{d['duplicates']:,} duplicates")
        out.append(f"  {label}: sent {d['sent']:,}, received {d['received']:,}, lost {d['lost']:,} "
                   f"({d['lost_pct']:.2f} %); longest gap {d['max_gap_ms']:.1f} ms at "
                   f"{d['max_gap_at_s']:.3f} s; slowest frame {d['max_latency_ms']:.1f} ms"
                   + "".join(f"; {x}" for x in extra))
    t = rep["tcp"]
    out.append("  TCP: " + ("one connection from before step 1 to after step 7" if t["survived"]
                             else "FAILED" + (f" ({t['error']})" if t["error"] else ""))
               + f"; {t['round_trips']:,} round trips ({t['round_trips_after_last_step']:,} after "
               f"the last step), longest wait {t['longest_wait_ms']:.0f} ms")
    if rep["notes"]:
        out += ["", "Notes:"] + [f"  - {n}" for n in rep["notes"]]
    out += ["", ("OK: " if rep["survived"] else "FAIL: ") + rep["verdict"]]
    return "\n".join(out)


def check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise NetfoError("--plot needs matplotlib: pip install matplotlib") from None


COLORS = {"primary": "#bfe3bf", "standby": "#f8dc9c", "none": "#f4a6a6"}
LINES = {"guest_to_peer": "#1f5fbf", "peer_to_guest": "#c0392b"}


def plot(run: Run, rep: dict, path: str) -> None:
    """Frames received per bin per direction; lost frames as ticks at their due
    time; steps as dashed lines; the transmitting slave as background. The
    upper panel is the whole run, the lower one zooms into the migration."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    t0, end = run.started, run.ended - run.started
    steps = rep["steps"]
    first = steps[0]["start_s"] if steps else 0.0
    last = steps[-1]["start_s"] + steps[-1]["duration_ms"] / 1000 if steps else end
    zoom = (max(0.0, first - 0.04), min(end, last + 0.08))
    esc = lambda s: s.replace("$", r"\$")            # no mathtext in the script lines

    spans, cur, at = [], (rep["transmitting_before"] or ["none"])[0], 0.0
    for c in rep["transmitting_changes"]:
        spans.append((at, c["t_s"], cur))
        cur, at = c["active"] or "none", c["t_s"]
    spans.append((at, end, cur))

    lost = {}
    for key, _ in DIRECTIONS:
        tx, rx = run.streams[key]
        got, _ = _received(tx, rx)
        lost[key] = [tx["start"] + s / tx["rate"] - t0 for s in range(tx["sent"]) if not got[s]]

    fig = plt.figure(figsize=(13, 9.5))
    gs = fig.add_gridspec(3, 1, height_ratios=[1, 1.2, 0.55], hspace=0.35)
    axes = [fig.add_subplot(gs[0]), fig.add_subplot(gs[1])]
    for ax, (lo, hi), width in ((axes[0], (0.0, end), 0.01), (axes[1], zoom, 0.005)):
        for a, b, who in spans:
            if b > lo and a < hi:
                ax.axvspan(max(a, lo), min(b, hi), color=COLORS.get(who, "#dddddd"), lw=0)
        expected = run.rate * width
        ymax = expected * 1.9
        n = max(1, int(round((hi - lo) / width)))
        for key, label in DIRECTIONS:
            c = [0] * n
            for t in run.streams[key][1]["times"]:
                i = int((t - t0 - lo) / width)
                if 0 <= i < n:
                    c[i] += 1
            xs = [lo + (i + 0.5) * width for i in range(n)]
            ax.step(xs, [min(v, ymax) for v in c], where="mid", color=LINES[key], lw=1.0)
            base = 0.0 if key == "guest_to_peer" else 0.045
            ax.vlines([x for x in lost[key] if lo <= x <= hi], ymax * base, ymax * (base + 0.04),
                      color=LINES[key], lw=0.6)
        ax.axhline(expected, color="#444444", lw=0.8, ls=":")
        for s in steps:
            if lo <= s["start_s"] <= hi:
                ax.axvline(s["start_s"], color="black", lw=0.8, ls="--")
                if ax is axes[1]:
                    ax.text(s["start_s"], ymax * 0.985, f" {s['n']}", va="top", ha="left",
                            fontsize=10, fontweight="bold")
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, ymax)
        ax.set_ylabel(f"frames per {width * 1000:g} ms")
    for flushed, resolved in _arp_outages(run):
        a, b = flushed - t0, resolved - t0
        y = run.rate * 0.01 * 1.9 * 0.62
        axes[0].annotate("", xy=(b, y), xytext=(a, y),
                         arrowprops=dict(arrowstyle="<->", color=LINES["guest_to_peer"], lw=1.2))
        axes[0].text((a + b) / 2, y * 1.04, f"the guest re-resolves the peer's ARP entry: "
                     f"{(b - a) * 1000:.0f} ms", ha="center", va="bottom", fontsize=8.5,
                     color=LINES["guest_to_peer"],
                     bbox=dict(boxstyle="round", fc="white", ec="none", alpha=0.8))
    axes[0].add_patch(matplotlib.patches.Rectangle((zoom[0], 0), zoom[1] - zoom[0],
                                                    run.rate * 0.01 * 1.9, fill=False, lw=1.2))
    axes[0].set_title("whole run (the box is the zoom below)", fontsize=10, loc="left")
    axes[1].set_title("the migration: steps 1-7 start at the dashed lines (a dip followed by a "
                      "spike is frames delayed, not lost)", fontsize=10, loc="left")
    axes[1].set_xlabel("seconds since the streams started")
    handles = [Line2D([], [], color=LINES[k], label=f"{lbl} frames received (ticks at the bottom: "
                      "lost frames, at their due time)") for k, lbl in DIRECTIONS]
    handles.append(Line2D([], [], color="#444444", ls=":", label=f"{run.rate:,.0f} frames/s"))
    handles += [Patch(color=COLORS[k], label=f"transmitting via {k}") for k in COLORS]
    axes[0].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=3,
                   fontsize=8, frameon=False)
    text = ax_text = fig.add_subplot(gs[2])
    ax_text.axis("off")
    g, p = rep["directions"]["guest_to_peer"], rep["directions"]["peer_to_guest"]
    w = max(len(_short(s["command"])) for s in steps) if steps else 0
    rows = [f"{'#':1}  {'start':>8}  {'took':>8}  {'step':{w}}  {'lost g→p':>8}  {'lost p→g':>8}  "
            "transmitting"]
    rows += [f"{s['n']}  +{s['start_s']:.3f} s  {s['duration_ms']:5.1f} ms  {_short(s['command']):{w}}  "
             f"{s['lost']['guest_to_peer']:>8,}  {s['lost']['peer_to_guest']:>8,}  "
             f"{' → '.join(s['transmitting'])}" for s in steps]
    if steps:
        rows.append(f"{'':1}  +{last:.3f} s  {'':8}  {'after the migration':{w}}  "
                    f"{g['lost_by_step']['after']:>8,}  {p['lost_by_step']['after']:>8,}  "
                    f"{' → '.join(rep['transmitting_after'])}")
    text.text(0.0, 1.0, esc("\n".join(rows)), family="monospace", fontsize=8, va="top")
    verdict = ("OK: " if rep["survived"] else "FAIL: ") + rep["verdict"]
    text.annotate("\n".join(textwrap.wrap(verdict, 150)), xy=(0.0, 1.0), xycoords="axes fraction",
                  xytext=(0, -(len(rows) + 0.8) * 8 * 1.2), textcoords="offset points",
                  fontsize=8.5, va="top", color="#1b6e1b" if rep["survived"] else "#b00000")
    fig.suptitle(f"netfo demo: the kernel document's live migration under {run.rate:,.0f} frames/s "
                 f"each way (lost g→p {g['lost']:,}, p→g {p['lost']:,}; longest gap "
                 f"{max(g['max_gap_ms'], p['max_gap_ms']):.0f} ms)", fontsize=11, y=0.975)
    fig.subplots_adjust(left=0.06, right=0.98, top=0.93, bottom=0.03)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- command

def cmd_demo(args) -> int:
    if not (0 < args.rate <= 100000):
        raise NetfoError(f"--rate must be more than 0 and at most 100000 frames/s, not {args.rate:g}")
    if args.plot:
        check_matplotlib()
    out = sys.stderr if args.json else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    demo = Demo(args.prefix, args.rate, args.keep, args.wire_like, progress=say)

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    completed = False
    try:
        run = demo.run()
        completed = True
    except KeyboardInterrupt as e:
        say(f"netfo demo: interrupted ({e or 'SIGINT'}); removing the lab")
        raise
    except BaseException:
        if demo.daemon_log and os.path.exists(demo.daemon_log):
            with open(demo.daemon_log, errors="replace") as f:
                tail = f.read().strip().splitlines()[-5:]
            if tail:
                say("netfo's log (last lines):\n  " + "\n  ".join(tail))
        raise
    finally:
        # A second Ctrl-C must not leave half a lab behind.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        try:
            demo.teardown(keep=args.keep and completed)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for s, h in old.items():
                signal.signal(s, h)
    run.netfo_log = demo.netfo_log
    rep = analyse(run)
    if args.json:
        print(json.dumps(rep, indent=2, ensure_ascii=False))
    else:
        print()
        print(format_report(rep))
    if args.plot:
        plot(run, rep, args.plot)
        say(f"plot saved to {args.plot}")
    if args.keep:
        say(f"the lab is still up, with netfo in {demo.lab.guest}: remove both with "
            f"`netfo lab --prefix {demo.lab.prefix} down`")
    return 0 if rep["survived"] else 1
