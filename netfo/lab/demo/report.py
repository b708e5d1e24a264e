"""The demo's text report, from the analysis (analysis.analyse)."""
from __future__ import annotations

from .analysis import DIRECTIONS


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
        out += ["", "In the guest, as it happened (netlink events; netfo's own account):"]
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
