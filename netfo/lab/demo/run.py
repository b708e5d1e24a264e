"""`netfo demo`: the kernel document's live migration, with traffic, in one command.

What it does, on a fresh machine (root):

1. builds the namespace lab (`netfo lab`, prefix "demo" unless --prefix) and
   runs `netfo up ens10` in its guest;
2. starts steady traffic through netfo: a sequence-numbered UDP stream each
   way between the guest (192.168.12.53) and the peer (192.168.12.1), --rate
   frames/s each (default 10,000), and one TCP connection doing a ping-pong
   every 10 ms (the tools are `python -m netfo.lab.stream ...`); a watcher in the
   guest samples `netfo status` every 50 ms and records the guest's link and
   neighbour events (netlink);
3. after 1 s of steady traffic runs the document's two migration scripts
   (`Lab.migrate()`: the seven steps), timing each;
4. streams 1.5 s more, then prints the timeline: each step's time and
   duration, the frames lost in each direction while it ran (and until the
   next step), which slave transmitted meanwhile (from netfo's structured
   events, `netfo events ens10 --json --follow`, stamped with the monotonic
   clock; the status samples if none), the guest's events interleaved with netfo's, per-stream
   totals, the longest gap, the TCP connection's fate, notes that explain
   the larger losses, and a verdict;
5. removes everything (the tools, netfo down, the lab, netfo's log), also on
   Ctrl-C, SIGTERM and errors. With --keep, a run that got to its verdict
   leaves the lab and netfo running (`netfo lab --prefix P down` removes
   them); an interrupted or failed run is always removed.

The losses per step, the verdict and the --json schema are analysis.py's;
the text report is report.py's, the picture plot.py's.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Callable, Optional

from ...errors import NetfoError
from .. import harness
from ..events import Events
from ..tool import Tool
from .analysis import IFNAME, WATCH_INTERVAL, Run, Step, analyse
from .plot import check_matplotlib, plot
from .report import format_report

PRE_S, POST_S = 1.0, 1.5           # steady traffic before the first / after the last step
TCP_INTERVAL = 0.01
PORT_G2P, PORT_P2G, PORT_TCP = 5001, 5002, 5003
NETNS_DIR = "/var/run/netns"


class Interrupted(KeyboardInterrupt):
    """SIGTERM/SIGHUP, turned into the same path as Ctrl-C."""


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
        self.follower: Optional[Events] = None    # netfo's structured events, as they come
        self.netfo_events: list = []

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
            self.follower = Events(lab.guest, IFNAME)
            self.tools.append(self.follower)
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
        # As a user runs it: the daemon detaches and logs to /run/netfo.
        p = harness.cli(self.lab.guest, "up", IFNAME)
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

    def collect_events(self) -> list:
        """netfo's structured events (netfo.lab.events), read while it still
        runs."""
        if self.follower is None:
            return []
        try:
            return self.follower.collect()
        except Exception:
            return list(self.follower.netfo_events)

    def teardown(self, keep: bool) -> None:
        """Stop the tools; unless keep, netfo down and remove the lab."""
        self.stop_tools()
        self.netfo_events = self.collect_events()
        if keep or not self.built:
            return
        if self.netfo_up and self.lab.exists():
            harness.cli(self.lab.guest, "down", IFNAME)
        self.lab.down()
        if self.daemon_log:
            try:
                os.unlink(self.daemon_log)      # named after a namespace inode that is gone now
            except OSError:
                pass


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
    run.netfo_events = demo.netfo_events
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
