"""The demo's analysis: a Run (what was measured) into the report (what
--json prints): losses per step, gaps, who transmitted when, the guest's
events, notes and the verdict.

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
from dataclasses import dataclass, field
from typing import Optional

from ...events import describe
from .. import events

IFNAME = "ens10"
WATCH_INTERVAL = 0.05              # the status watcher's period (the fallback source)
MAX_GAP_S = 2.0                    # the verdict's limit on a gap (see the module doc)
FINAL_WINDOW_S = 0.5               # "still delivering": the streams' last 0.5 s ...
MIN_FINAL_DELIVERED = 0.5          # ... delivered at least half their frames
DIRECTIONS = (("guest_to_peer", "guest→peer"), ("peer_to_guest", "peer→guest"))


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
    netfo_events: list = field(default_factory=list)  # netfo's structured events (netfo.lab.events)
    tcp: Optional[dict] = None
    arp_retrans_ms: Optional[int] = None           # the guest's ARP retransmit interval
    started: float = 0.0
    ended: float = 0.0


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


def _events(run: Run) -> list:
    """netfo's structured events of our master ([] from a daemon that has none)."""
    return [e for e in run.netfo_events if e.get("master") in (None, IFNAME)]


def _netfo_lines(run: Run) -> list:
    """[(monotonic t, line)]: netfo's own account, from its structured events
    (in its log's words)."""
    return [(e.get("loop_mono", e["mono"]), describe(e)) for e in _events(run)]


def _transmit_changes(run: Run) -> tuple:
    """(initial, [(monotonic t, active)], source): which slave transmits, over time.

    netfo reports each switch as a structured event stamped with the
    monotonic clock; the status samples (every 50 ms) give the state at the
    stream start, and the changes if no event came."""
    good = [s for s in run.samples if "error" not in s]
    initial = next((s.get("active") for s in good if s["t"] >= run.started), None)
    if initial is None and good:
        initial = good[0].get("active")
    changes = [(t, to) for t, to, _, _ in events.switches(_events(run))
               if run.started <= t <= run.ended]
    if changes:
        return initial, changes, "netfo's events"
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
    logged = [(t, msg) for t, msg in _netfo_lines(run) if run.started <= t <= run.ended]
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
    """(off, on) monotonic times of the master's carrier: from netfo's events
    or its log, else from the guest's netlink events (which lag it by a few ms)."""
    out, off = [], None
    log = [(t, f"{IFNAME}: carrier {'on' if on else 'off'}") for t, on in events.carrier(_events(run))]
    changes = log or [(e["t"], f"{IFNAME}: carrier {'on' if e['carrier'] else 'off'}")
                     for e in sorted(run.events, key=lambda e: e["t"])
                     if e["event"] == "link" and e["name"] == IFNAME and not e["gone"]
                     and not e.get("initial")]
    for t, m in changes:
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
