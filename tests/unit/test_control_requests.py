"""The control server's request checking and its non-blocking connections
(netfo/server.py), on a real abstract socket of this namespace; no root."""
import json
import os
import selectors
import socket
import threading

import pytest

from netfo import control, server
from netfo.server import MAX_REQUEST, RequestError, Server, parse_request
from support.clock import Clock


@pytest.mark.parametrize("line", [
    b'{"cmd": "status"}', b'{"cmd": "events", "since": 12.5}', b'{"cmd": "events", "since": 3}',
    b'{"cmd": "set", "active": "standby"}', b'{"cmd": "down"}', b'{"cmd": "handover"}',
])
def test_good_requests_pass(line):
    assert parse_request(line) == json.loads(line)


@pytest.mark.parametrize("line, says", [
    (b"[]", "must be a JSON object, not an array"),
    (b'"status"', "must be a JSON object, not a string"),
    (b"null", "not null"),
    (b"{}", '"cmd" as a string, not null'),
    (b'{"cmd": ["status"]}', '"cmd" as a string, not an array'),
    (b'{"cmd": "reboot"}', "unknown command 'reboot'"),
    (b'{"cmd": "set", "active": []}', "active must be a string, not an array"),
    (b'{"cmd": "set", "active": {"a": 1}}', "not an object"),
    (b'{"cmd": "events", "since": "yesterday"}', "since must be a number, not a string"),
    (b'{"cmd": "events", "since": true}', "not a boolean"),
    (b'{"cmd": "status", "x": 1}', "unknown field 'x'"),
    (b"[" * 100000 + b"]" * 100000, "longer than"),
    (b"[" * 30000 + b"]" * 30000, "nested too deeply"),
    (b'{"a":' * 10000 + b"1" + b"}" * 10000, "nested too deeply"),
    (b"\xff\xfe", "not UTF-8"),
    (b"{", "not JSON"),
    (b"", "not JSON"),
    (b'{"cmd": "events", "since": ' + b"9" * 5000 + b"}", "not JSON"),
])
def test_bad_requests_are_refused_with_a_reason(line, says):
    with pytest.raises(RequestError, match=None) as e:
        parse_request(line)
    assert says in str(e.value)


def test_handlers_check_values_too():
    srv = Server(None, None)
    assert "error" in srv.set({"cmd": "set", "active": "sideways"})
    assert "error" in srv.set({"cmd": "set", "active": ["primary"]})
    assert "error" in srv.events({"cmd": "events", "since": float("nan")})
    assert "error" in srv.events({"cmd": "events", "since": True})


# -- the connections, driven as the daemon's loop drives them ---------------

class FakeDaemon:
    def __init__(self):
        self.forced = []
        self.stop = threading.Event()

    def force(self, role):
        raise KeyError("boom")              # a handler bug


@pytest.fixture
def served():
    name = f"netfo-unit-{os.getpid()}-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("\0" + name)
    sock.listen(8)
    clock = Clock()
    srv = Server(sock, FakeDaemon(), clock=clock)
    srv.status = lambda req: {"ok": "status"}
    srv.handlers["status"] = srv.status
    sel = selectors.DefaultSelector()
    srv.attach(sel)

    def turn(timeout=0.05):
        for key, mask in sel.select(timeout):
            assert key.data is srv
            srv.ready(key, mask)
        srv.expire()

    def client():
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect("\0" + name)
        c.settimeout(2)
        return c

    yield srv, turn, client, clock
    srv.close()
    sel.close()
    sock.close()


def reply_of(c, turn):
    data = b""
    for _ in range(100):
        turn()
        try:
            c.setblocking(False)
            chunk = c.recv(1 << 20)
        except BlockingIOError:
            continue
        if not chunk:
            break
        data += chunk
        if data.endswith(b"\n"):
            break
    return json.loads(data) if data else None


def test_a_request_is_answered_and_the_connection_closed(served):
    srv, turn, client, _ = served
    c = client()
    c.sendall(b'{"cmd": "status"}\n')
    assert reply_of(c, turn) == {"ok": "status"}
    assert srv.conns == set()


def test_a_trickling_client_never_blocks_a_turn(served):
    srv, turn, client, clock = served
    c = client()
    turn()
    for b in b'{"cmd": "sta':
        c.send(bytes([b]))
        t = __import__("time").monotonic()
        turn(0)
        assert __import__("time").monotonic() - t < 0.05
    assert len(srv.conns) == 1 and srv.next_deadline() == 1000.0 + server.DEADLINE
    clock.t += server.DEADLINE             # the whole request had 2 s
    turn(0)
    assert srv.conns == set()
    c.setblocking(True)
    assert "within" in json.loads(c.recv(4096))["error"]


def test_a_line_without_newline_is_cut_at_the_size_limit(served):
    srv, turn, client, _ = served
    c = client()
    c.setblocking(False)
    sent = 0
    chunk = b"x" * 8192
    while sent <= MAX_REQUEST + len(chunk):
        try:
            sent += c.send(chunk)
        except BlockingIOError:
            pass
        turn(0)
        if not srv.conns:
            break
    assert srv.conns == set()
    c.setblocking(True)
    assert "longer than" in json.loads(c.recv(4096).split(b"\n")[0])["error"]


def test_a_handler_bug_is_an_error_reply(served, caplog):
    srv, turn, client, _ = served
    srv.d.force = lambda role: (_ for _ in ()).throw(KeyError("boom"))
    c = client()
    c.sendall(b'{"cmd": "set", "active": "standby"}\n')
    r = reply_of(c, turn)
    if os.geteuid() == 0:
        assert "KeyError" in r["error"]
        assert "Traceback" in caplog.text
    else:
        assert "needs root (CAP_NET_ADMIN)" in r["error"]


def test_garbage_then_a_good_client(served):
    srv, turn, client, _ = served
    for bad in (b"[]\n", b'{"cmd":"set","active":[]}\n', b"[" * 70000 + b"\n"):
        c = client()
        c.sendall(bad)
        assert "error" in reply_of(c, turn)
    c = client()
    c.sendall(b'{"cmd": "status"}\n')
    assert reply_of(c, turn) == {"ok": "status"}


def test_a_liveness_probe_is_just_closed(served):
    srv, turn, client, _ = served
    client().close()
    turn()
    turn()
    assert srv.conns == set()


def test_one_user_cannot_take_every_connection(served):
    srv, turn, client, _ = served
    cs = []
    for _ in range(server.MAX_PER_USER + 4):
        cs.append(client())
        turn()
    assert len(srv.conns) == (len(cs) if os.geteuid() == 0 else server.MAX_PER_USER)


def test_a_reader_that_does_not_read_is_dropped(served):
    srv, turn, client, clock = served
    srv.handlers["status"] = lambda req: {"big": "x" * (4 << 20)}
    c = client()
    c.sendall(b'{"cmd": "status"}\n')
    turn()
    turn()
    assert len(srv.conns) == 1               # the reply waits for the client ...
    clock.t += server.REPLY_DEADLINE
    turn(0)
    assert srv.conns == set()                # ... not for ever


# -- credentials -------------------------------------------------------------

def test_admin_refusal_of_this_process():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        why = control.admin_refusal(a)
        caps = int(dict(l.split(":\t", 1) for l in open("/proc/self/status")
                        if ":\t" in l)["CapEff"], 16)
        if os.geteuid() == 0 or caps >> control.CAP_NET_ADMIN & 1:
            assert why is None
        else:
            assert "without CAP_NET_ADMIN" in why
        assert control.untrusted_server(a, "x") is None if os.geteuid() == 0 else \
            "not trusted" in control.untrusted_server(a, "x")
