"""The terminal table, the JSON file and the PNG chart of one run."""
from __future__ import annotations

import json
import os
import platform
import subprocess
from typing import Callable

from .measure import DIRECTION_NAMES, DIRECTIONS

KERNEL, OVS_REFS = "kernel", ("ovs-tso", "ovs")


def _get(*keys: str) -> Callable[[dict, str], "float | None"]:
    """Accessor: result, direction -> result[k0][direction][k1...] or None."""
    def get(res: dict, d: str):
        v = res.get(keys[0], {}).get(d)
        for k in keys[1:]:
            v = v.get(k) if isinstance(v, dict) else None
        return v
    return get


# (key, title, unit scale, accessor, note accessor for brackets, lower is better)
FIGURES = [
    ("tcp_gbps", "TCP throughput, Gbit/s", 1, _get("tcp", "gbps"), None, False),
    ("udp64_kpps", "64-byte UDP delivered to the app, kframes/s [offered]", 1e-3,
     _get("udp64", "delivered_pps"), _get("udp64", "offered_pps"), False),
    ("ping_p50_ms", "ping round trip p50, ms [added over direct]", 1, _get("ping", "p50_ms"),
     _get("ping", "added_p50_ms"), True),
    ("ping_p99_ms", "ping round trip p99, ms [added over direct]", 1, _get("ping", "p99_ms"),
     _get("ping", "added_p99_ms"), True),
    ("cpu_s_per_gb", "forwarder CPU seconds per GB moved (TCP runs)", 1, _get("cpu_s_per_gb"),
     None, True),
    ("udp64_cpu_pct", "forwarder CPU during the 64-byte test, % of a core", 1,
     _get("udp64", "forwarder_cpu_pct"), None, True),
]


SHORT = {"tcp_gbps": "TCP Gbit/s", "udp64_kpps": "64-byte frames delivered, k/s",
         "ping_p50_ms": "ping p50, ms", "cpu_s_per_gb": "forwarder CPU s/GB"}


def ovs_ref(mode_results: dict) -> str | None:
    """The Open vSwitch variant ratios are taken to: with userspace TSO if it ran."""
    return next((p for p in OVS_REFS if p in mode_results and "skipped" not in mode_results[p]), None)


def _fmt(v: float | None, scale: float = 1) -> str:
    if v is None:
        return "n/a"
    v *= scale
    return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"


def _ratio(v: float | None, ref: float | None) -> str:
    if v is None or not ref:
        return "-"
    return f"{v / ref:.2f}x"


def table(results: dict) -> str:
    """One block per mode and figure: a row per path, both directions, ratios."""
    lines = []
    for mode, res in results.items():
        ovs = ovs_ref(res)
        lines.append(f"=== {mode} mode " + "=" * 60)
        for key, title, scale, get, note, lower in FIGURES:
            head = f"{title}{' (lower is better)' if lower else ''}"
            lines.append(f"\n{head}")
            oname = "/" + (ovs or "ovs")
            cols = "".join(f"{DIRECTION_NAMES[d]:>20} {'/kernel':>8} {oname:>9}" for d in DIRECTIONS)
            lines.append(f"  {'path':<9}{cols}")
            for path, r in res.items():
                if "skipped" in r:
                    lines.append(f"  {path:<9}  skipped: {r['skipped']}")
                    continue
                row = f"  {path:<9}"
                for d in DIRECTIONS:
                    v = get(r, d)
                    cell = _fmt(v, scale)
                    if note and v is not None and note(r, d) is not None:
                        n = note(r, d)
                        cell += f" [{'+' if lower and n >= 0 else ''}{_fmt(n, scale)}]"
                    kref = get(res[KERNEL], d) if KERNEL in res and "skipped" not in res[KERNEL] else None
                    oref = get(res[ovs], d) if ovs else None
                    row += f"{cell:>20} {_ratio(v, kref):>8} {_ratio(v, oref):>9}"
                lines.append(row)
        errs = [f"  {p}: {e}" for p, r in res.items() for e in r.get("errors", [])]
        if errs:
            lines.append("\nerrors:")
            lines.extend(errs)
        lines.append("")
    return "\n".join(lines)


def machine() -> dict:
    """What the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "kernel": platform.release(), "cpu": model,
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "iperf3": _version(["iperf3", "--version"]),
            "ovs": _version(["ovs-vswitchd", "--version"])}


def _version(argv: list[str]) -> str | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return None


def write_json(path: str, doc: dict) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")


def plot(path: str, results: dict, title: str) -> str | None:
    """Grouped bars: a row of figures per mode, a group per direction, a bar per path.

    Returns why no chart was made, or None."""
    try:
        import matplotlib
        matplotlib.use("Agg")       # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    shown = [f for f in FIGURES if f[0] in ("tcp_gbps", "udp64_kpps", "ping_p50_ms", "cpu_s_per_gb")]
    modes = list(results)
    fig, axes = plt.subplots(len(modes), len(shown), figsize=(4.2 * len(shown), 3.6 * len(modes)),
                             squeeze=False)
    paths = [p for p in dict.fromkeys(p for res in results.values() for p in res)]
    colors = dict(zip(paths, plt.get_cmap("tab10").colors))
    width = 0.8 / max(1, len(paths))
    for row, mode in enumerate(modes):
        res = results[mode]
        for col, (key, ftitle, scale, get, _, lower) in enumerate(shown):
            ax = axes[row][col]
            for i, p in enumerate(paths):
                r = res.get(p, {})
                if "skipped" in r or not r:
                    continue
                vals = [(get(r, d) or 0) * scale for d in DIRECTIONS]
                ax.bar([x + (i - (len(paths) - 1) / 2) * width for x in range(len(DIRECTIONS))],
                       vals, width, label=p, color=colors[p])
            ax.set_xticks(range(len(DIRECTIONS)), [DIRECTION_NAMES[d] for d in DIRECTIONS])
            ax.set_title(f"{mode}: {SHORT[key]}" + (" (lower is better)" if lower else ""), fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
