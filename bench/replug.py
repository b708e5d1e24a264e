"""python3 -m bench.replug: how soon a re-plugged VF carries the guest's frames.

In a fresh namespace lab with netfo up on ens10 and a 2,000 frames/s UDP
stream from the guest, the VF is unplugged and plugged back N times in each
of two ways: `at-up` (its far end is up, so it has carrier the moment netfo
brings it up: the namespace lab's usual VF) and `late` (its far end comes up
--carrier-after ms after netfo brought it up: a real VF's link training,
2 s in a QEMU guest).  Per re-plug, milliseconds from the VF's first
RTM_NEWLINK to netfo's enslave event, to its IFF_UP, to its carrier, to
the stream's first frame through it; and from carrier to that frame.
Medians (and min/max) per way; JSON with every re-plug on request.

Run it under `flock /work/shared/bench.lock` on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from netfo.lab import Lab, harness
from netfo.lab.replug import Replugs

KEYS = ("enslave", "up", "carrier", "tx", "tx_after_carrier")


def summary(rows: list) -> dict:
    out = {}
    for k in KEYS:
        xs = [r[k] * 1000 for r in rows if r.get(k) is not None]
        out[k] = ({"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}
                  if xs else None)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.replug", description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10, help="re-plugs per way (default 10)")
    ap.add_argument("--carrier-after", type=float, default=200,
                    help="ms between the VF's up and its carrier in the `late` way (default 200)")
    ap.add_argument("--prefix", default=f"rp{os.getpid() % 10000}", help="lab namespace prefix")
    ap.add_argument("--json", metavar="FILE", help="write every re-plug's figures there")
    a = ap.parse_args(argv)
    ways = {"at-up": None, "late": a.carrier_after / 1000}
    rows: dict = {w: [] for w in ways}
    with Lab(a.prefix, log=lambda *_: None) as lab:
        with harness.Netfo(lab, logfile=f"/tmp/netfo-{a.prefix}.log") as netfo:
            r = Replugs(lab, netfo)
            try:
                for i in range(a.n):
                    for way, after in ways.items():
                        rows[way].append(r.once(after))
                        print(f"{way} {i + 1}/{a.n}: " + "  ".join(
                            f"{k} {v * 1000:.1f}" if v is not None else f"{k} -"
                            for k, v in rows[way][-1].items()), file=sys.stderr)
            finally:
                r.close()
    doc = {w: summary(rs) for w, rs in rows.items()}
    print(f"ms from the VF's RTM_NEWLINK (tx_after_carrier: from its carrier), "
          f"median [min-max] of {a.n}")
    print(f"{'way':8}" + "".join(f"{k:>22}" for k in KEYS))
    for w, s in doc.items():
        print(f"{w:8}" + "".join(
            f"{s[k]['median']:>8.1f} [{s[k]['min']:.1f}-{s[k]['max']:.1f}]".rjust(22) if s[k]
            else f"{'-':>22}" for k in KEYS))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"summary": doc, "replugs": rows, "carrier_after_ms": a.carrier_after}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
