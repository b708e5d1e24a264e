"""`netfo events ens10 --json --follow` in the lab: the daemon pushes each
event as it records it (not a poll), with the master's name and both
clocks; the stream ends with `netfo down` and goes on across `netfo restart`."""
from __future__ import annotations

import subprocess
import time

from netfo import spawn
from netfo.lab.events import Events

LATENCY = 0.1           # s from an event's own "mono" to its line read here


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.01)


def kinds(f: Events, after: float) -> list:
    return [(e["kind"], e.get("role") or e.get("to")) for e in f.netfo_events
            if e["mono"] > after and e["kind"] in ("switch", "enslave", "release")]


def test_unplug_and_replug_are_pushed_at_once(lab, netfo):
    lab.link("virtio", "up")                     # the standby can take over
    netfo.wait(lambda s: all(sl["carrier"] for sl in s["slaves"]), what="both carriers")
    f = Events(lab.guest, "ens10")
    try:
        # the ring first: the slaves' enslave events of `up`
        wait_for(lambda: len([e for e in f.netfo_events if e["kind"] == "enslave"]) >= 2, 5,
                 "backlog")
        t0 = time.monotonic()
        lab.unplug()
        netfo.wait(lambda s: s["active"] == "standby", what="standby transmitting")
        lab.plug()
        netfo.wait(lambda s: s["active"] == "primary", what="primary transmitting again")
        # the VF's carrier goes before the VF itself: either may be seen first
        want = [{("release", "primary"), ("switch", "standby")},
                ("enslave", "primary"), ("switch", "primary")]
        wait_for(lambda: [set(kinds(f, t0)[:2]), *kinds(f, t0)[2:]] == want, 5,
                 f"{want} (got {kinds(f, t0)})")
        late = [(e["kind"], round((arrived - e["mono"]) * 1000, 1))
                for e, arrived in zip(f.netfo_events, f.arrived) if e["mono"] > t0]
        print(f"event -> reader latency (ms): {late}")
        assert all(0 <= ms <= LATENCY * 1000 for _, ms in late), late
        new = [e for e in f.netfo_events if e["mono"] > t0]
        assert all(e["master"] == "ens10" for e in new)
        # wall and monotonic clocks of one event agree with each other
        assert all(abs((e["time"] - e["mono"]) - (time.time() - time.monotonic())) < 1
                   for e in new)
        assert f.proc.poll() is None                # still following
    finally:
        f.stop(timeout=3)


def test_the_stream_ends_with_down_and_survives_a_restart(lab):
    def cli(*argv):
        return lab.run("guest", *spawn.netfo(*argv), check=False, timeout=60)
    lab.link("virtio", "up")                     # the standby can take over
    assert cli("up", "ens10").returncode == 0
    f = Events(lab.guest, "ens10")
    try:
        wait_for(lambda: any(e["kind"] == "enslave" for e in f.netfo_events), 5, "backlog")
        seen = len(f.netfo_events)
        p = cli("restart", "ens10")
        assert p.returncode == 0, p.stderr
        assert f.proc.poll() is None                # it waits for the new daemon
        t0 = time.monotonic()
        lab.run("guest", "ip", "link", "set", "ens11", "down")  # only the new daemon sees it
        wait_for(lambda: ("switch", "standby") in kinds(f, t0), 5,
                 f"the new daemon's switch: {f.netfo_events[seen - 1:]} {f.proc.poll()} {f.stderr}")
        old = f.netfo_events[:seen]
        assert len({e["mono"] for e in f.netfo_events}) == len(f.netfo_events)   # none twice
        assert f.netfo_events[:seen] == old
        p = cli("down", "ens10")
        assert p.returncode == 0, p.stderr
        f.proc.wait(5)                              # the end of the stream: exit 0
        assert f.proc.returncode == 0, f.stderr
        released = {k for k in kinds(f, t0) if k[0] == "release"}
        assert released == {("release", "primary"), ("release", "standby")}, kinds(f, t0)
    finally:
        f.stop(timeout=3)
        cli("down", "ens10")


def test_a_follow_without_a_daemon_is_one_line(lab):
    p = lab.run("guest", *spawn.netfo("events", "ens10", "--follow"), check=False, timeout=30)
    assert p.returncode == 1
    assert p.stderr == "netfo: netfo is not running on ens10 in this network namespace\n"


def test_a_user_may_follow_too(lab, netfo):
    """Reading is open to every user: nobody follows (within MAX_PER_USER)."""
    p = subprocess.Popen(["ip", "netns", "exec", lab.guest, "setpriv", "--reuid=nobody",
                          "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
                          *spawn.netfo("events", "ens10", "--json", "--follow")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=spawn.NEUTRAL_CWD)
    try:
        first = p.stdout.readline()
        assert '"kind": "enslave"' in first, (first, p.stderr.read() if p.poll() else "")
    finally:
        p.kill()
        p.wait()
