"""The demo's timeline as a picture (matplotlib, optional: `--plot`)."""
from __future__ import annotations

import textwrap

from ...errors import NetfoError
from .analysis import DIRECTIONS, Run, _arp_outages, _received
from .report import _short


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
