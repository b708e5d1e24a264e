"""Prints the micro-benchmarks' frames/s medians after pytest-benchmark's table."""
from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)      # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter):
    from bench.microlab import RESULTS
    if not RESULTS:
        return
    by = {(r["direction"], r["size"], r["impl"]): r for r in RESULTS}
    tr = terminalreporter
    tr.section("forwarding loop: frames/s (median of rounds)")
    tr.write_line(f"{'direction':<12}{'frame':>7}{'netfo Cython':>16}{'Python ref':>16}{'ratio':>8}"
                  f"{'netfo Gbit/s':>14}{'io_uring':>12}{'uring/Cython':>14}")
    for (direction, size) in dict.fromkeys((d, s) for d, s, _ in by):
        c, p = by.get((direction, size, "netfo")), by.get((direction, size, "python"))
        u = by.get((direction, size, "netfo-uring"))
        ratio = f"{c['fps'] / p['fps']:.2f}x" if c and p else "-"
        uratio = f"{u['fps'] / c['fps']:.2f}x" if c and u else "-"
        tr.write_line(f"{direction:<12}{size:>7}{_k(c):>16}{_k(p):>16}{ratio:>8}"
                      f"{(c['gbps'] if c else 0):>14.2f}{_k(u):>12}{uratio:>14}")


def _k(r) -> str:
    return f"{r['fps'] / 1e3:,.0f} k" if r else "-"
