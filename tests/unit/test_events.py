"""netfo's structured events (netfo.lab.events) as the demo and the failover
bench read them, on recorded `netfo events ens10 --json --follow` lines (no root)."""
import json

from netfo.lab import events

# One migration, as the daemon reports it: the VF deleted, the standby's
# carrier flapping, a new VF enslaved. Plus lines that are not events.
RECORDED = """\
{"time": 1700000101.1329, "mono": 101.1329, "master": "ens10", "kind": "release", "role": "primary", "slave": "ens11", "gone": true}
{"time": 1700000101.1330, "mono": 101.1330, "master": "ens10", "kind": "switch", "from": "primary", "to": "standby", "slave": "ens10nsby", "reason": "deleted"}
{"time": 1700000101.1519, "mono": 101.1519, "master": "ens10", "kind": "switch", "from": "standby", "to": null, "slave": null, "reason": "carrier"}
{"time": 1700000101.1520, "mono": 101.1520, "master": "ens10", "kind": "carrier", "carrier": false}
{"time": 1700000101.1534, "mono": 101.1534, "master": "ens10", "kind": "switch", "from": null, "to": "standby", "slave": "ens10nsby", "reason": "carrier"}
{"time": 1700000101.1535, "mono": 101.1535, "master": "ens10", "kind": "carrier", "carrier": true}
{"time": 1700000101.2199, "mono": 101.2199, "master": "ens10", "kind": "enslave", "role": "primary", "slave": "ens11", "index": 5}
{"time": 1700000101.2209, "mono": 101.2209, "master": "ens10", "kind": "switch", "from": "standby", "to": "primary", "slave": "ens11", "reason": "admin"}
{"time": 1700000101.2300, "mono": 101.2300, "master": "ens10", "kind": "path", "role": "primary", "slave": "ens11", "up": true}
{"time": 1700000101.2400, "mono": 101.2400, "master": "ens10", "kind": "mtu", "mtu": 1500}
{"time": 1700000101.0, "from": "primary", "to": "standby", "reason": "manual", "slave": "ens10nsby"}
{"event": "ready"}
not json at all
[1, 2]
{"time": 1700000101.5, "mono": "soon", "master": "ens10", "kind": "switch"}
"""


def test_parse_keeps_events_and_nothing_else():
    evs = events.parse_lines(RECORDED.splitlines())
    assert len(evs) == 10
    assert [e["kind"] for e in evs][:3] == ["release", "switch", "switch"]
    # an older daemon's switch record (no kind, no mono) is not an event
    assert events.parse('{"time": 1.0, "from": "primary", "to": "standby"}') is None
    assert events.parse({"kind": "carrier", "mono": 1.0, "time": True}) is None


def test_switches_and_carrier():
    evs = events.parse_lines(RECORDED.splitlines())
    sw = events.switches(evs, "ens10")
    assert [(to, why) for _, to, why, _ in sw] == [
        ("standby", "deleted"), (None, "carrier"), ("standby", "carrier"), ("primary", "admin")]
    assert sw[0][0] == 101.1330 and sw[0][3] == "ens10nsby"
    assert events.switches(evs, "ens20") == []
    assert events.carrier(evs) == [(101.1520, False), (101.1535, True)]


def test_describe_recorded_events():
    from netfo.events import describe
    evs = events.parse_lines(RECORDED.splitlines())
    text = [describe(e) for e in evs]
    assert text[0] == "ens11 released from primary (deleted)"
    assert text[1] == "primary -> standby  (deleted, ens10nsby)"
    assert text[2] == "standby -> none  (carrier)"
    assert text[3] == "ens10 carrier off"
    assert text[6] == "ens11 enslaved as primary (index 5)"
    assert text[8] == "primary path up (ens11)"
    assert text[9] == "ens10 mtu 1500"
    assert describe({"kind": "new-kind", "mono": 1, "time": 1, "x": 2}) == 'new-kind {"x": 2}'


def test_merge_drops_repeats_and_orders_by_mono():
    evs = events.parse_lines(RECORDED.splitlines())
    followed, ring = evs[4:], evs           # --follow missed the first ones; the ring has all
    merged = events.merge(followed, list(reversed(ring)))
    assert merged == evs


def test_the_follower_reads_its_lines():
    """Events.on_event, fed as the reader thread feeds it (no process)."""
    f = events.Events.__new__(events.Events)
    f.netfo_events, f.arrived = [], []
    for line in RECORDED.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            f.on_event(obj)
    assert len(f.netfo_events) == 10


def _run_with_events():
    """The demo analysis' made-up run, with netfo's events instead of samples only."""
    from test_demo_analysis import _fake_run
    run = _fake_run()
    t0 = run.started
    evs = events.parse_lines(RECORDED.splitlines())
    shift = t0 + 1.02 - evs[0]["mono"]       # the release during step 2
    for e in evs:
        e["mono"] += shift
    run.netfo_events = evs
    return run


def test_demo_analysis_uses_events_over_samples():
    from netfo.lab.demo.analysis import analyse
    run = _run_with_events()
    rep = analyse(run)
    assert rep["transmitting_source"] == "netfo's events"
    assert [c["active"] for c in rep["transmitting_changes"]] == ["standby", None, "standby", "primary"]
    assert rep["transmitting_after"][-1] == "primary"
    netfo = [e["what"] for e in rep["guest_events"] if e["source"] == "netfo"]
    assert "primary -> standby  (deleted, ens10nsby)" in netfo and "ens10 carrier off" in netfo
    assert any("had no carrier for 1.5 ms" in n for n in rep["notes"])


def test_failover_bench_switches_from_events():
    from bench.failover import netfo_switches
    evs = events.parse_lines(RECORDED.splitlines())
    assert [f"{why} -> {to}" for _, to, why in netfo_switches(evs)] == [
        "deleted -> standby", "carrier -> None", "carrier -> standby", "admin -> primary"]
