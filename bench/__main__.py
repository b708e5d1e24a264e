"""python3 -m bench: netfo against the kernel, Open vSwitch and Python, in the lab.

For each lab mode (offload, wire, wire-gro) and path (direct, kernel, netfo, ovs-tso,
ovs, python) it builds a fresh namespace lab, sets the path up, measures TCP
throughput, 64-byte UDP frames, ping round trips and the forwarder's CPU per
GB in both directions, and removes the lab.  Prints a table with ratios to
the kernel path and to Open vSwitch, writes JSON and a PNG chart.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

from . import ovs, report, runner
from .paths import PATHS
from .runner import MODES, Progress, Settings

QUICK_PATHS = ("direct", "kernel", "netfo", "python")
# netfo's own variants (--threads 2, --busy-poll 50, --gro off) are there to be asked for
FULL_PATHS = tuple(p for p in PATHS if not p.startswith("netfo-"))
TOOLS = ("ip", "tc", "nft", "iperf3", "ping", "ss", "ethtool", "tcpdump")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="short runs, offload mode only, no Open vSwitch (well under a minute)")
    ap.add_argument("--paths", help=f"comma list of {','.join(PATHS)} (default: all but netfo-*; "
                                    f"--quick: {','.join(QUICK_PATHS)})")
    ap.add_argument("--modes", help="comma list of offload,wire,wire-gro (wire-gro: wire with GRO on the VF; default: all; --quick: offload)")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results.json"),
                    help="results file (default: bench/results.json)")
    ap.add_argument("--plot", help="PNG chart (default: the JSON path with .png)")
    ap.add_argument("--no-plot", action="store_true", help="make no chart")
    ap.add_argument("--no-install", action="store_true",
                    help="do not apt-get install openvswitch-switch when it is missing")
    g = ap.add_argument_group("durations (defaults: full / --quick)")
    g.add_argument("--tcp-seconds", type=float, help="per iperf3 run (5 / 2)")
    g.add_argument("--repeats", type=int, help="TCP runs per direction, median taken (3 / 1)")
    g.add_argument("--udp-seconds", type=float, help="64-byte test per direction (3 / 1)")
    g.add_argument("--ping-count", type=int, help="pings per direction at --ping-interval (500 / 200)")
    g.add_argument("--streams", type=int, help="parallel TCP streams per iperf3 run, -P (1)")
    g.add_argument("--ping-interval", type=float, default=0.002, help="s between pings (0.002)")
    a = ap.parse_args(argv)
    a.paths = _choose(a.paths, QUICK_PATHS if a.quick else FULL_PATHS, PATHS, "path", ap)
    a.modes = _choose(a.modes, ("offload",) if a.quick else MODES, MODES, "mode", ap)
    return a


def _choose(given: str | None, default: tuple, known, what: str, ap) -> list[str]:
    chosen = given.split(",") if given else list(default)
    bad = [c for c in chosen if c not in known]
    if bad:
        ap.error(f"unknown {what} {', '.join(bad)}: pick from {', '.join(known)}")
    return chosen


def settings(a: argparse.Namespace) -> Settings:
    base = Settings(tcp_seconds=2, repeats=1, udp_seconds=1, ping_count=200) if a.quick else Settings()
    for field in ("tcp_seconds", "repeats", "udp_seconds", "ping_count", "ping_interval", "streams"):
        if getattr(a, field) is not None:
            setattr(base, field, getattr(a, field))
    return base


def preflight(a: argparse.Namespace) -> list[str]:
    """Refuse early what cannot work; fetch OVS if asked for and missing. Returns notes."""
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces): run it with sudo")
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if absent:
        sys.exit(f"bench: {', '.join(absent)} not found: apt-get install iproute2 nftables iperf3 "
                 "iputils-ping ethtool tcpdump")
    notes = []
    if any(p.startswith("ovs") for p in a.paths) and ovs.missing() and not a.no_install \
            and shutil.which("apt-get"):
        print("bench: installing openvswitch-switch (apt-get) for the ovs paths ...", file=sys.stderr)
        p = subprocess.run("apt-get install -y -qq openvswitch-switch || "
                           "(apt-get update -qq && apt-get install -y -qq openvswitch-switch)",
                           shell=True, capture_output=True, text=True,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if p.returncode:
            err = (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
            notes.append(f"apt-get install openvswitch-switch failed: {err}")
    if a.quick:
        notes.append("quick: short runs, offload mode only, Open vSwitch paths not run "
                     "(run without --quick for them and for wire mode)")
    return notes


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    s = settings(a)
    notes = preflight(a)
    for n in notes:
        print(f"bench: {n}", file=sys.stderr)
    # SIGTERM tears down like Ctrl-C: every lab, process and temp dir goes.
    # SIGINT too even where it came ignored (started in the background by a shell).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    plan = len(a.modes) * len(a.paths)
    progress = Progress(plan * s.cost())
    progress.note(f"bench: {plan} runs ({', '.join(a.modes)} x {', '.join(a.paths)}), "
                  f"about {runner._mmss(plan * s.cost())} planned")
    t0 = time.time()
    try:
        results = runner.run(a.modes, a.paths, s, progress)
    except KeyboardInterrupt:
        print("\nbench: interrupted; labs removed", file=sys.stderr)
        return 130
    took = time.time() - t0
    m = report.machine()
    header = (f"netfo bench: {m['nproc']} CPUs ({m['cpu']}), kernel {m['kernel']}, "
              f"{'quick' if a.quick else 'full'} run in {runner._mmss(took)}; TCP median of "
              f"{s.repeats} x {s.tcp_seconds:g} s, 64-byte UDP {s.udp_seconds:g} s, "
              f"{s.ping_count} pings every {s.ping_interval * 1000:g} ms")
    print(header)
    print(report.table(results))
    for n in notes:
        print(f"note: {n}")
    doc = {"version": 1, "machine": m, "settings": runner.settings_dict(s), "quick": a.quick,
           "started": t0, "seconds": took, "notes": notes, "results": results}
    report.write_json(a.json, doc)
    print(f"results: {a.json}")
    if not a.no_plot:
        png = a.plot or os.path.splitext(a.json)[0] + ".png"
        why = report.plot(png, results, header)
        print(f"chart: {png}" if why is None else f"chart skipped: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
