"""Events as people and programs read them, and the daemon's wiring of the
loop's own switches, without root."""
import json
import threading

import pytest

from netfo import cli
from netfo.config import Config
from netfo.group import Group, Role
from netfo.server import Server

from test_group import MAC, link

BASE = {"time": 1_700_000_000.25, "mono": 5.0, "master": "ens10"}


@pytest.mark.parametrize("fields, text", [
    ({"kind": "switch", "from": "primary", "to": "standby", "slave": "ens10nsby",
      "reason": "manual"}, "primary -> standby  (manual, ens10nsby)"),
    ({"kind": "switch", "from": "standby", "to": None, "slave": None, "reason": "carrier"},
     "standby -> none  (carrier)"),
    ({"kind": "carrier", "carrier": False}, "ens10 carrier off"),
    ({"kind": "enslave", "role": "primary", "slave": "ens11", "index": 7},
     "ens11 enslaved as primary (index 7)"),
    ({"kind": "release", "role": "primary", "slave": "ens11", "gone": True},
     "ens11 released from primary (deleted)"),
    ({"kind": "mtu", "mtu": 9000}, "ens10 mtu 9000"),
    ({"kind": "mac-revert", "mac": "02:00:00:00:00:01"},
     "ens10 MAC change to 02:00:00:00:00:01 reverted"),
    ({"kind": "path", "role": "primary", "slave": "ens11", "up": False},
     "primary path down (ens11)"),
])
def test_every_kind_has_a_human_form(fields, text):
    out = cli.format_event({**BASE, **fields})
    assert out.endswith("  " + text) and out[8:12] == ".250"


class FakeDaemon:
    def __init__(self):
        self.group = Group("ens10", MAC, standby_index=2, master_index=9)
        self.group.link_changed(link(2, "ens10nsby"))
        self.stop = threading.Event()


def test_events_request_answers_since():
    d = FakeDaemon()
    srv = Server(None, d)
    assert set(srv.handlers) == {"status", "set", "events", "down"}
    every = srv.events({})["events"]
    assert [e["kind"] for e in every] == ["switch", "carrier"]
    assert srv.events({"since": every[-1]["mono"]})["events"] == []
    json.dumps(every)                       # the wire format is JSON
    assert "error" in srv.events({"since": "yesterday"})


class FakeDP:
    """What the daemon reads of the datapath."""
    def __init__(self):
        self.slot, self.failovers = 0, 0
        self.ready, self.preferred = {}, None

    def stats(self):
        return {"master": {"send_failovers": self.failovers, "link_holds": 0}}

    def active(self):
        return self.slot

    def set_ready(self, role, on):
        self.ready[role] = on

    def set_preferred(self, role):
        self.preferred = role

    def set_takeover(self, role):
        self.takeover = role


class FakeSlaves(set):
    held: dict = {}                         # no sockets: no live carrier to read


@pytest.fixture
def wired():
    pytest.importorskip("netfo._fastpath", reason="netfo.daemon needs the compiled extension")
    from netfo.daemon import Daemon         # needs the compiled datapath, not root
    d = Daemon("ens10", Config(notify_count=2))
    d.group = Group("ens10", MAC, standby_index=2, master_index=9)
    d.dp = FakeDP()
    d.slaves = FakeSlaves({Role.PRIMARY, Role.STANDBY})   # enslaved, as far as _push asks
    d.carrier = True
    d.group.link_changed(link(2, "ens10nsby"))
    d.group.link_changed(link(3, "ens11"))
    yield d
    d.ipr.close()


def test_a_send_error_is_one_input_to_the_group(wired):
    d = wired
    d._follow_loop(counters=True)               # nothing happened
    assert d.notify_due == [] and d.group.switches()[-1]["to"] == "primary"
    d.dp.failovers, d.dp.slot = 1, 1            # the loop fell over to the standby
    d._follow_loop(counters=True)
    e = d.group.switches()[-1]
    assert (e["from"], e["to"], e["reason"]) == ("primary", "standby", "send-error")
    assert len(d.notify_due) == 2               # announced (notify_count rounds) ...
    assert d.dp.preferred == Role.PRIMARY       # ... but the group's choice stands
    d.notify_due = []
    d._follow_loop(counters=True)               # read again: nothing new
    assert d.notify_due == [] and len(d.group.switches()) == 3


def test_a_dead_loop_stops_the_daemon(wired):
    def broken():
        raise OSError(5, "Input/output error")
    wired._run_loop(broken)
    assert wired.stop.is_set() and isinstance(wired.loop_error, OSError)


def test_the_loops_event_fd_is_read_and_followed(wired):
    import os
    d = wired
    fd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        d.dp.failovers, d.dp.slot = 1, 1
        os.eventfd_write(fd, 1)
        d._loop_event(fd)
        assert d.group.switches()[-1]["reason"] == "send-error"
        with pytest.raises(BlockingIOError):
            os.eventfd_read(fd)                 # the count was taken
        d._loop_event(fd)                       # a spurious wake-up is harmless
        assert len(d.group.switches()) == 3
    finally:
        os.close(fd)
