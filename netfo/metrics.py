"""Prometheus metrics: the status replies of the masters, in the text
exposition format (version 0.0.4).

One pure function of the `status` dicts (server.py), so that `netfo
metrics` (node_exporter's textfile collector) and the daemon's own
`--metrics-listen` endpoint (exporter.py) print the same text, and tests
parse it without a daemon.  No client library: the daemon's only runtime
dependency stays pyroute2.

Every sample is labelled with its master; a slave's also with its role and
its name.  Counters end in `_total`; a slave's counters start from 0 when
it is enslaved (a re-plugged VF is a new slave), which Prometheus' rate()
and increase() take as a counter reset.  No timestamps: the textfile
collector refuses them.
"""
from __future__ import annotations

import math
from typing import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DIRECTIONS = ("rx", "tx")             # as the interfaces count them (ip -s link)

# name, type, help; the order of the output
FAMILIES = (
    ("netfo_info", "gauge",
     "Always 1: the netfo version of the daemon that runs the master"),
    ("netfo_start_time_seconds", "gauge",
     "Unix time the master's daemon started"),
    ("netfo_master_carrier", "gauge",
     "1 while the master has carrier (some slave can transmit, or downdelay holds it)"),
    ("netfo_master_packets_total", "counter",
     "Frames through the master: rx delivered to the guest, tx sent by it"),
    ("netfo_master_bytes_total", "counter",
     "Bytes through the master: rx delivered to the guest, tx sent by it"),
    ("netfo_master_dropped_total", "counter",
     "Frames the master dropped, per direction (netfo_drops_total has the reasons)"),
    ("netfo_queue_packets_total", "counter",
     "Frames through the master per datapath queue (--queues): rx delivered to the guest, tx sent by it"),
    ("netfo_queue_bytes_total", "counter",
     "Bytes through the master per datapath queue (--queues)"),
    ("netfo_queue_dropped_total", "counter",
     "Frames the master dropped per datapath queue (--queues), per direction"),
    ("netfo_gro_merged_segments_total", "counter",
     "TCP segments from the slaves merged into an earlier frame before the master (--gro)"),
    ("netfo_drops_total", "counter",
     "Frames the master dropped, by reason"),
    ("netfo_transmitting", "gauge",
     "1 for the slave the master transmits through, 0 for the other"),
    ("netfo_failovers_total", "counter",
     "Switches of the transmitting slave since the daemon started (the first choice is none)"),
    ("netfo_last_failover_timestamp_seconds", "gauge",
     "Unix time of the last switch of the transmitting slave (absent before the first)"),
    ("netfo_loop_switches_total", "counter",
     "Times the forwarding loop left or took a slave by itself before the control plane decided"),
    ("netfo_silence_reinstalls_total", "counter",
     "Times netfo put back the slaves' silencing (nft table/chains, sysctls) after a firewall or sysctl reload removed it"),
    ("netfo_forced", "gauge",
     "1 for the role `netfo set IF active ROLE` forces, 0 otherwise"),
    ("netfo_slave_up", "gauge",
     "1 while the slave is admin up with carrier (could transmit)"),
    ("netfo_slave_carrier", "gauge",
     "1 while the slave has carrier"),
    ("netfo_slave_link_failures_total", "counter",
     "Times the slave stopped being usable (carrier lost, admin down, path down) since enslaved"),
    ("netfo_slave_packets_total", "counter",
     "Frames on the slave since it was enslaved: rx received from the network, tx sent to it"),
    ("netfo_slave_bytes_total", "counter",
     "Bytes on the slave since it was enslaved: rx received from the network, tx sent to it"),
    ("netfo_slave_dropped_total", "counter",
     "Frames dropped on the slave since it was enslaved, per direction"),
    ("netfo_probe_path_up", "gauge",
     "With probing on: 1 while the slave's path answers the ARP/NS probes"),
    ("netfo_probe_missed_rounds_total", "counter",
     "With probing on: probe rounds in which the slave heard no answer, since enslaved"),
)


def escape_label(value: str) -> str:
    """A label value as the format wants it: backslash, quote, newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "+Inf" if v > 0 else "-Inf"
        return repr(v)
    return str(int(v))


def _directions(prefix: str, labels: dict, stats: dict) -> Iterable[tuple]:
    """Packets, bytes and drops per direction, as an interface counts them."""
    for d in DIRECTIONS:
        lab = {**labels, "direction": d}
        for what in ("packets", "bytes", "dropped"):
            yield f"{prefix}_{what}_total", lab, stats[f"{d}_{what}"]


def _samples(st: dict) -> Iterable[tuple]:
    """(family, labels, value) of one master's status."""
    m = st["master"]
    master = {"master": m["name"]}
    if st.get("netfo_version"):
        yield "netfo_info", {**master, "version": st["netfo_version"]}, 1
    if st.get("since") is not None:
        yield "netfo_start_time_seconds", master, float(st["since"])
    yield "netfo_master_carrier", master, bool(m["carrier"])
    s = m["stats"]
    yield from _directions("netfo_master", master, s)
    for i, q in enumerate(st.get("queues", [])):
        yield from _directions("netfo_queue", {**master, "queue": str(i)}, q)
    if "rx_coalesced" in s:
        yield "netfo_gro_merged_segments_total", master, s["rx_coalesced"]
    for reason, n in sorted(st.get("drops", {}).items()):
        yield "netfo_drops_total", {**master, "reason": reason}, n
    yield "netfo_failovers_total", master, st["failovers"]
    if st.get("last_failover") is not None:
        yield "netfo_last_failover_timestamp_seconds", master, float(st["last_failover"])
    if "loop_switches" in st:
        yield "netfo_loop_switches_total", master, st["loop_switches"]
    if st.get("silence"):
        yield "netfo_silence_reinstalls_total", master, st["silence"]["reinstalls"]
    for role in ("primary", "standby"):
        yield "netfo_forced", {**master, "role": role}, st.get("forced") == role
    for sl in st["slaves"]:
        lab = {**master, "role": sl["role"], "slave": sl["name"]}
        yield "netfo_transmitting", lab, bool(sl["transmitting"])
        yield "netfo_slave_up", lab, bool(sl["ready"])
        yield "netfo_slave_carrier", lab, bool(sl["carrier"])
        if "link_failures" in sl:
            yield "netfo_slave_link_failures_total", lab, sl["link_failures"]
        yield from _directions("netfo_slave", lab, sl["stats"])
        probe = sl.get("probe")
        if probe:
            yield "netfo_probe_path_up", lab, bool(probe["up"])
            yield "netfo_probe_missed_rounds_total", lab, probe["missed_total"]


def render(statuses: Iterable[dict]) -> str:
    """The exposition text of these masters' status replies: each family
    once (HELP, TYPE, then every master's samples), families without a
    sample left out."""
    by_family: dict = {name: [] for name, _, _ in FAMILIES}
    for st in statuses:
        for name, labels, value in _samples(st):
            by_family[name].append((labels, value))
    out = []
    for name, kind, text in FAMILIES:
        samples = by_family[name]
        if not samples:
            continue
        out.append(f"# HELP {name} {_escape_help(text)}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            body = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in labels.items())
            out.append(f"{name}{{{body}}} {_number(value)}")
    return "\n".join(out) + "\n" if out else ""
