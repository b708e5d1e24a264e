"""python3 -m bench.vm: netfo and the kernel's net_failover in one QEMU guest.

Boots a TCG guest per mode (netfo, kernel) and runs the four events of issue
14 `--runs` times under 1,000 frames/s UDP streams each way; prints frames
lost per event and direction, netfo next to the kernel, and netfo's
`netfo up` time to ready in the guest. Needs root, qemu-system-x86,
busybox-static and apt-get (the guest kernel is fetched once into
/var/cache/netfo-vm).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time

from ..runner import Progress, _mmss
from . import events, image
from .qemu import Vm, VmError, qemu_binary

MODES = ("netfo", "kernel")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m bench.vm", description=__doc__.split("\n\n")[1])
    p.add_argument("--runs", type=int, default=3, help="runs of the four events per mode (3)")
    p.add_argument("--modes", default=",".join(MODES), help="netfo,kernel (both)")
    p.add_argument("--events", default=",".join(events.EVENTS),
                   help=f"a subset of {','.join(events.EVENTS)}")
    p.add_argument("--ipv6", action="store_true",
                   help="IPv6 enabled in the guest, streams over IPv6 (default: IPv4, IPv6 off)")
    p.add_argument("--seconds", type=float, default=10, help="each stream's length (10)")
    p.add_argument("--at", type=float, default=3, help="the event this long into it (3)")
    p.add_argument("--rate", type=float, default=1000, help="frames/s each way (1000)")
    p.add_argument("--smp", type=int, default=2, help="guest vCPUs (2)")
    p.add_argument("--json", metavar="FILE", help="write every figure to FILE ('-': stdout)")
    a = p.parse_args(argv)
    a.modes = tuple(m for m in a.modes.split(",") if m)
    a.events = tuple(e for e in a.events.split(",") if e)
    bad = [m for m in a.modes if m not in MODES] + [e for e in a.events if e not in events.EVENTS]
    if bad or not a.modes or not a.events:
        p.error(f"unknown mode/event {', '.join(bad) or '(none given)'}")
    if a.runs < 1 or a.at <= 0 or a.seconds <= a.at + 1 or a.rate <= 0:
        p.error("need --runs >= 1, --seconds > --at + 1, --rate > 0")
    return a


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if os.geteuid() != 0:
        sys.exit("bench.vm: needs root (namespaces, taps): run it with sudo")
    if qemu_binary() is None:
        sys.exit("bench.vm: qemu-system-x86_64 not found: apt-get install qemu-system-x86")
    missing = [t for t in ("ip", "ping") if shutil.which(t) is None]
    if missing:
        sys.exit(f"bench.vm: {', '.join(missing)} not found: apt-get install iproute2 iputils-ping")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    s = events.Streams(rate=a.rate, seconds=a.seconds, at=a.at)
    per_event = s.seconds + 8
    progress = Progress(len(a.modes) * (40 + a.runs * len(a.events) * per_event))
    t0 = time.monotonic()
    results, guests = [], {}
    try:
        k = image.kernel(log=progress.note)
        for mode in a.modes:
            progress.step(mode, "boot", 40)
            with Vm(k, mode, ipv6=a.ipv6, smp=a.smp, log=progress.note) as vm:
                info = events.setup(vm)
                info["boot_s"] = round(vm.boot_s, 1)
                guests[mode] = info
                progress.note(f"{mode}: booted in {info['boot_s']} s"
                              + (f", netfo up ready in {info['up_s']} s" if info["up_s"] else ""))
                results += events.series(vm, a.runs, s, progress, a.events)
    except (image.ImageError, VmError) as e:
        sys.exit(f"bench.vm: {e}")
    except KeyboardInterrupt:
        print("\nbench.vm: interrupted; guests, namespaces and temp dirs removed", file=sys.stderr)
        return 130
    summ = events.summary(results, a.modes)
    took = time.monotonic() - t0
    print(f"netfo vm bench: QEMU TCG q35, {a.smp} vCPUs, guest kernel {k.version}, "
          f"{'IPv6' if a.ipv6 else 'IPv4 (IPv6 off)'}, {a.runs} runs, {s.rate:g} frames/s each "
          f"way, event at {s.at:g} s of {s.seconds:g} s, in {_mmss(took)}; frames lost:")
    print(events.table(summ))
    if any("vf" in r for r in results):
        print("The re-plugged VF in the guest (bench/vm/vftrace.py):")
        print(events.vf_table(results, a.modes))
    if "netfo" in guests:
        print(f"netfo up, time to ready in the guest: {guests['netfo']['up_s']} s")
    if a.json:
        doc = {"settings": vars(a) | {"modes": list(a.modes), "events": list(a.events)},
               "kernel": k.version, "guests": guests, "summary": summ, "results": results}
        if a.json == "-":
            json.dump(doc, sys.stdout, indent=1)
        else:
            with open(a.json, "w") as f:
                json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
