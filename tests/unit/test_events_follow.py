"""`netfo events --follow`: the control server's subscribers (events pushed
as the EventLog records them, bounded per reader) and control.follow, the
client, on real abstract sockets of this namespace; no root."""
import json
import os
import queue
import selectors
import socket
import threading
import time

import pytest

from netfo import control, server
from netfo.errors import NetfoError
from netfo.events import EventLog
from netfo.server import Server, parse_request
from support.clock import Clock


class Group:
    def __init__(self, events):
        self.events = events


class StubDaemon:
    """What the server asks of the daemon for events: its group's EventLog."""

    def __init__(self, log: EventLog):
        self.group = Group(log)
        self.stop = threading.Event()


def ticking(start=100.0):
    t = [start]

    def clock():
        t[0] += 0.001
        return t[0]
    return clock


@pytest.fixture
def served():
    name = f"netfo-unit-{os.getpid()}-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("\0" + name)
    sock.listen(8)
    log = EventLog("ens10", clock=ticking())
    clock = Clock()
    srv = Server(sock, StubDaemon(log), clock=clock)
    srv.handlers["status"] = lambda req: {"ok": "status"}
    sel = selectors.DefaultSelector()
    srv.attach(sel)

    def turn(timeout=0.02):
        for key, mask in sel.select(timeout):
            srv.ready(key, mask)
        srv.expire()

    def client(req=None):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect("\0" + name)
        c.settimeout(2)
        if req is not None:
            c.sendall(json.dumps(req).encode() + b"\n")
        return c

    yield srv, log, turn, client, clock
    srv.close()
    sel.close()
    sock.close()


def lines(c, n, turn=None):
    """n JSON lines from c (turning the loop meanwhile, if given)."""
    data = b""
    c.setblocking(False)
    for _ in range(200):
        if turn:
            turn(0.005)
        try:
            chunk = c.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        except BlockingIOError:
            if not turn:
                time.sleep(0.005)
        if data.count(b"\n") >= n:
            break
    return [json.loads(x) for x in data.splitlines()]


def subscribers(srv):
    return [c for c in srv.conns if c.sub is not None]


def test_follow_is_a_checked_boolean():
    assert parse_request(b'{"cmd": "events", "follow": true, "since": 3.5}')["follow"] is True
    for bad, says in ((b'{"cmd": "events", "follow": 1}', "follow must be a boolean, not a number"),
                      (b'{"cmd": "events", "follow": "yes"}', "not a string"),
                      (b'{"cmd": "status", "follow": true}', "unknown field 'follow'")):
        with pytest.raises(server.RequestError) as e:
            parse_request(bad)
        assert says in str(e.value)


def test_backlog_then_live_events_pushed_in_order(served):
    srv, log, turn, client, _ = served
    old = [log.record("enslave", role="standby", slave="ens10nsby", index=2),
           log.record("enslave", role="primary", slave="ens11", index=3),
           log.record("switch", **{"from": None, "to": "primary", "slave": "ens11",
                                   "reason": "carrier"})]
    c = client({"cmd": "events", "follow": True, "since": old[0]["mono"]})
    assert lines(c, 2, turn) == old[1:]                 # the ring newer than since
    assert len(subscribers(srv)) == 1 and srv.next_deadline() is None   # no deadline
    # Recorded outside any turn of the loop: the record itself sends it.
    live = [log.record("release", role="primary", slave="ens11", gone=True),
            log.record("switch", **{"from": "primary", "to": "standby", "slave": "ens10nsby",
                                    "reason": "deleted"}),
            log.record("mtu", mtu=9000)]
    got = lines(c, 3)
    assert got == live and [e["master"] for e in got] == ["ens10"] * 3
    assert all({"time", "mono", "kind"} <= set(e) for e in got)


def test_without_since_the_whole_ring_comes_first(served):
    srv, log, turn, client, _ = served
    for mtu in range(1500, 1510):
        log.record("mtu", mtu=mtu)
    c = client({"cmd": "events", "follow": True})
    assert [e["mtu"] for e in lines(c, 10, turn)] == list(range(1500, 1510))


def test_other_clients_are_served_as_before(served):
    srv, log, turn, client, _ = served
    sub = client({"cmd": "events", "follow": True})
    turn()
    c = client({"cmd": "status"})
    assert lines(c, 1, turn) == [{"ok": "status"}]
    e = log.record("mtu", mtu=1400)
    c = client({"cmd": "events"})                       # the ring, once, then closed
    assert lines(c, 1, turn) == [{"events": [e]}]
    assert c.recv(10) == b""
    assert len(srv.conns) == 1 and subscribers(srv)
    assert lines(sub, 1) == [e]


def test_a_subscriber_that_goes_away_is_forgotten(served):
    srv, log, turn, client, _ = served
    c = client({"cmd": "events", "follow": True})
    turn()
    turn()
    assert subscribers(srv)
    c.close()
    turn()
    assert srv.conns == set()
    log.record("mtu", mtu=1500)                         # nobody to send it to: fine


def test_a_subscriber_that_does_not_read_is_dropped_with_bounded_memory(served):
    srv, log, turn, client, clock = served
    c = client()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.sendall(b'{"cmd": "events", "follow": true}\n')
    turn()
    turn()
    conn, = subscribers(srv)
    big = "x" * 2000
    recorded, most = 0, 0
    t0 = time.monotonic()
    while conn.sub == "live":
        log.record("mac-revert", mac=big)
        recorded += 1
        most = max(most, conn.queued)
        assert recorded < 10000
    took = time.monotonic() - t0
    assert most <= server.SUB_BUFFER                    # never more than the bound queued
    assert took < 2.0, took                             # and no record ever waited for it
    for _ in range(50):                                 # nothing more is queued for it
        log.record("mac-revert", mac=big)
    assert conn.queued <= server.SUB_BUFFER
    # It reads at last: what was sent, then why it ends, then EOF.
    data = b""
    c.setblocking(True)
    c.settimeout(0.5)
    while True:
        turn(0)
        try:
            chunk = c.recv(1 << 16)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
    got = [json.loads(x) for x in data.splitlines()]
    assert got[-1]["error"].startswith("too slow: ")
    missed = int(got[-1]["error"].split()[2])
    assert len(got) - 1 + missed == recorded            # each event: received, or counted
    assert [e["mac"] for e in got[:-1]] == [big] * (len(got) - 1)
    assert srv.conns == set()


def test_a_dropped_subscriber_that_never_reads_is_closed_at_the_deadline(served):
    srv, log, turn, client, clock = served
    c = client()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.sendall(b'{"cmd": "events", "follow": true}\n')
    turn()
    turn()
    conn, = subscribers(srv)
    while conn.sub == "live":
        log.record("mac-revert", mac="y" * 4000)
    turn(0)
    assert conn in srv.conns and srv.next_deadline() == clock.t + server.REPLY_DEADLINE
    clock.t += server.REPLY_DEADLINE
    turn(0)
    assert srv.conns == set()


def test_a_user_cannot_hold_more_subscriptions_than_connections(served):
    srv, log, turn, client, _ = served
    cs = []
    for _ in range(server.MAX_PER_USER + 3):
        cs.append(client({"cmd": "events", "follow": True}))
        turn()
        turn()
    want = len(cs) if os.geteuid() == 0 else server.MAX_PER_USER
    assert len(subscribers(srv)) == want


def test_the_end_says_why(served):
    srv, log, turn, client, _ = served
    c = client({"cmd": "events", "follow": True})
    turn()
    turn()
    log.record("release", role="primary", slave="ens11", gone=False)
    srv.end("down")
    got = lines(c, 2)
    assert [e.get("kind") for e in got] == ["release", None] and got[1] == {"end": "down"}
    assert c.recv(10) == b"" and srv.conns == set()


# -- the client: control.follow --------------------------------------------

class Loop(threading.Thread):
    """A server's loop in a thread; fn(srv, log) runs in it (as the daemon's
    parts record events in the daemon's loop)."""

    def __init__(self, ifname: str, log: EventLog):
        super().__init__(daemon=True)
        self.sock = control.listen(ifname)
        self.log = log
        self.srv = Server(self.sock, StubDaemon(log))
        self.sel = selectors.DefaultSelector()
        self.srv.attach(self.sel)
        self.calls: queue.Queue = queue.Queue()
        self.done = threading.Event()
        self.start()

    def run(self):
        while not self.done.is_set():
            for key, mask in self.sel.select(0.005):
                self.srv.ready(key, mask)
            self.srv.expire()
            while not self.calls.empty():
                self.calls.get()(self.srv, self.log)

    def do(self, fn):
        self.calls.put(fn)

    def stop(self, why: str):
        ended = threading.Event()

        def end(srv, log):
            self.sock.close()
            srv.end(why)
            ended.set()
        self.do(end)
        ended.wait(5)
        self.done.set()
        self.join(5)
        self.sel.close()


@pytest.fixture
def trusting(monkeypatch):
    """The unit tests' servers are this user's, not root's."""
    monkeypatch.setattr(control, "untrusted_server", lambda s, ifname: None)
    return f"u{os.getpid() % 100000}x{id(monkeypatch) % 1000}"


def test_follow_goes_on_across_a_handover(trusting):
    ifname = trusting
    clock = ticking(500.0)
    old = Loop(ifname, EventLog(ifname, clock=clock))
    old.do(lambda srv, log: log.record("mtu", mtu=1500))
    got = []
    it = control.follow(ifname)
    got.append(next(it))
    old.do(lambda srv, log: log.record("mtu", mtu=1501))
    got.append(next(it))
    new_log = EventLog(ifname, clock=lambda: 400.0)
    stale = new_log.record("mtu", mtu=1)            # older than what the follower has seen

    def hand_over():
        old.stop("handover")
        time.sleep(0.2)                             # the new daemon binds a little later
        new_log.clock = clock
        new_log.record("mtu", mtu=1502)             # newer: sent from the backlog
        return Loop(ifname, new_log)

    box = []
    t = threading.Thread(target=lambda: box.append(hand_over()))
    t.start()
    got.append(next(it))
    t.join()
    new = box[0]
    new.do(lambda srv, log: log.record("mtu", mtu=1503))
    got.append(next(it))
    new.stop("down")
    assert list(it) == []                           # the end: down
    assert [e["mtu"] for e in got] == [1500, 1501, 1502, 1503] and stale["mtu"] not in \
        [e["mtu"] for e in got]


def test_follow_says_when_there_is_no_daemon_or_it_vanishes(trusting):
    ifname = trusting
    with pytest.raises(NetfoError, match="not running"):
        next(control.follow(ifname))
    loop = Loop(ifname, EventLog(ifname, clock=ticking()))
    it = control.follow(ifname)
    loop.do(lambda srv, log: log.record("mtu", mtu=1500))
    assert next(it)["mtu"] == 1500

    def vanish(srv, log):                           # a crash: no last line
        loop.sock.close()
        srv.close()
    loop.do(vanish)
    with pytest.raises(NetfoError, match="went away"):
        next(it)
    loop.done.set()
    loop.join(5)
    loop.sel.close()


def test_follow_of_a_too_slow_reader_is_an_error(trusting):
    ifname = trusting
    loop = Loop(ifname, EventLog(ifname, clock=ticking()))
    try:
        it = control.follow(ifname)
        loop.do(lambda srv, log: log.record("mtu", mtu=1500))
        next(it)

        def drop(srv, log):
            conn, = subscribers(srv)
            srv._drop(conn)
            srv._flush(conn)
        loop.do(drop)
        with pytest.raises(NetfoError, match="too slow: 1 events dropped"):
            next(it)
    finally:
        loop.stop("down")
