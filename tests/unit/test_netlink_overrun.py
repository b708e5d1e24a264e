"""A netlink overrun (ENOBUFS on the daemon's link-event socket): the
daemon re-reads every link; a slave deleted while its event was lost is
released, and the VF plugged back in its place (a new index) is enslaved."""
import logging
import types

import pytest

pytest.importorskip("netfo._fastpath", reason="netfo.daemon needs the compiled extension")

from netfo import daemon as daemon_mod  # noqa: E402
from netfo.daemon import Daemon  # noqa: E402
from netfo.group import Group, Link, Role

MAC = "52:54:00:00:12:53"


def link(index, name):
    return Link(index=index, name=name, mac=MAC, up=True, carrier=True)


class FakeSlaves:
    def __init__(self):
        self.held, self.refused, self.calls = {}, {}, []

    def __contains__(self, role):
        return role in self.held

    def enslave(self, role, link, fd=None):
        self.calls.append(("enslave", role, link.index))
        self.held[role] = types.SimpleNamespace(index=link.index, name=link.name)
        return link

    def release(self, role, gone):
        self.calls.append(("release", role, gone))
        self.held.pop(role, None)


class FakeDp:
    def __init__(self):
        self.ready, self.preferred, self.released = {}, 0, []

    def set_ready(self, role, r):
        self.ready[role] = r

    def set_preferred(self, slot):
        self.preferred = slot

    def set_takeover(self, slot):
        self.takeover = slot

    def release(self, role):
        self.released.append(role)

    def active(self):
        p = self.preferred
        for s in (p, 1 - p):
            if self.ready.get(s):
                return s
        return -1


def daemon(monkeypatch, links_now):
    d = Daemon.__new__(Daemon)
    d.ifname, d.master_index, d.carrier, d.keep_carrier = "ens10", 9, True, False
    d.config = types.SimpleNamespace(notify_count=0, notify_interval_s=0.0,
                                     reselect="always")
    d.service = types.SimpleNamespace(switched=lambda: None)
    d.prober = types.SimpleNamespace(window=1.0)
    d.inherited, d.send_failovers, d.notify_due = {}, 0, []
    d.ipr = None
    d.stop = types.SimpleNamespace(is_set=lambda: False)
    d.group = Group("ens10", MAC, standby_index=2, master_index=9)
    d.slaves, d.dp = FakeSlaves(), FakeDp()
    monkeypatch.setattr(daemon_mod.links, "dump", lambda ipr: list(links_now))
    monkeypatch.setattr(daemon_mod.links, "get",
                        lambda ipr, index: next((l for l in links_now if l.index == index), None))
    return d


def overrun(d, *indexes):
    """What _watch's reader does on ENOBUFS: None in the inbox, then a wake."""
    import os
    import queue
    d.inbox = queue.SimpleQueue()
    d.wake_r, d.wake_w = os.pipe()
    for i in (None, *indexes):
        d.inbox.put(i)
    os.write(d.wake_w, b"!")
    try:
        d._netlink()
    finally:
        os.close(d.wake_r)
        os.close(d.wake_w)


def test_overrun_releases_the_deleted_vf_and_enslaves_the_new_one(monkeypatch, caplog):
    now = [link(2, "ens10nsby"), link(3, "ens11")]
    d = daemon(monkeypatch, now)
    d._resync(first=2)
    assert d.group.slaves[Role.PRIMARY].index == 3 and d.dp.active() == Role.PRIMARY
    # The VF is deleted and re-plugged (index 7); every event of it was lost.
    now[:] = [link(2, "ens10nsby"), link(7, "ens11")]
    with caplog.at_level(logging.INFO, logger="netfo"):
        overrun(d)
    assert "socket overrun" in caplog.text
    assert ("release", Role.PRIMARY, True) in d.slaves.calls
    assert d.slaves.calls[-1] == ("enslave", Role.PRIMARY, 7)
    assert d.group.slaves[Role.PRIMARY].index == 7
    assert d.slaves.held[Role.PRIMARY].index == 7
    assert d.dp.active() == Role.PRIMARY


def test_overrun_after_the_new_vf_was_seen_and_ignored(monkeypatch):
    """The new VF's NEWLINK arrived, but the old one's DELLINK was lost: the
    new one was ignored (the role was taken); the resync frees the role and
    takes it."""
    now = [link(2, "ens10nsby"), link(3, "ens11")]
    d = daemon(monkeypatch, now)
    d._resync(first=2)
    now[:] = [link(2, "ens10nsby"), link(7, "ens11")]
    d._on_links([7])                    # seen while 3 still holds the role: ignored
    assert d.group.slaves[Role.PRIMARY].index == 3
    overrun(d)
    assert d.group.slaves[Role.PRIMARY].index == 7
    assert d.dp.active() == Role.PRIMARY


def test_overrun_with_nothing_lost_changes_nothing(monkeypatch):
    now = [link(2, "ens10nsby"), link(3, "ens11")]
    d = daemon(monkeypatch, now)
    d._resync(first=2)
    calls = list(d.slaves.calls)
    overrun(d)
    assert d.slaves.calls == calls
    assert d.group.slaves[Role.PRIMARY].index == 3
