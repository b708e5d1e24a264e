"""python3 -m bench.up_time: how long `netfo up ens10` takes to ready, and its imports.

Where Python starts slowly (a guest whose root is on 9p took 25-37 s,
issue 14) the imports are most of `netfo up`.  In a fresh namespace lab:
the wall time of `netfo up ens10` (the client returns once the daemon says
ready) and of `netfo down ens10`, N times with a warm page cache and
--cold times after `echo 3 > /proc/sys/vm/drop_caches` (needs root; it
slows every process on the machine for a moment); and the import time
(python -X importtime, cumulative, µs) of the client (netfo.cli) and of
the daemon's modules (netfo.daemon).  Medians.

Run it under `flock /work/shared/bench.lock` on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from netfo import spawn
from netfo.lab import Lab


def import_us(module: str) -> int:
    """Cumulative import time of module in a fresh interpreter (µs)."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                       capture_output=True, text=True, cwd=spawn.NEUTRAL_CWD, check=True)
    for line in p.stderr.splitlines():
        parts = [x.strip() for x in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1])
    raise RuntimeError(f"no import time for {module}: {p.stderr[-300:]}")


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed(ns: str, *argv: str) -> float:
    t0 = time.monotonic()
    p = subprocess.run(["ip", "netns", "exec", ns, *spawn.netfo(*argv)], capture_output=True,
                       text=True, cwd=spawn.NEUTRAL_CWD)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"netfo {' '.join(argv)}: {p.stderr.strip()}")
    return dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.up_time", description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10, help="warm runs (default 10)")
    ap.add_argument("--cold", type=int, default=0, help="runs after dropping the page cache")
    ap.add_argument("--prefix", default=f"up{os.getpid() % 10000}", help="lab namespace prefix")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    res: dict = {k: [] for k in ("import_cli_us", "import_daemon_us", "up_s", "down_s", "up_cold_s")}
    for _ in range(a.n):
        res["import_cli_us"].append(import_us("netfo.cli"))
        res["import_daemon_us"].append(import_us("netfo.daemon"))
    with Lab(a.prefix, log=lambda *_: None) as lab:
        for i in range(a.n + a.cold):
            cold = i >= a.n
            if cold:
                drop_caches()
            res["up_cold_s" if cold else "up_s"].append(timed(lab.guest, "up", "ens10"))
            res["down_s"].append(timed(lab.guest, "down", "ens10"))
    med = {k: statistics.median(v) for k, v in res.items() if v}
    for k, v in med.items():
        unit = "ms"
        shown = v / 1000 if k.endswith("_us") else v * 1000
        print(f"{k[:-3] if k.endswith('_us') else k[:-2]:14} median {shown:8.1f} {unit} "
              f"[{min(res[k]) / (1000 if k.endswith('_us') else 0.001):.1f}-"
              f"{max(res[k]) / (1000 if k.endswith('_us') else 0.001):.1f}] n={len(res[k])}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"median": med, "runs": res}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
