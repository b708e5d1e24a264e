"""--metrics-listen (netfo/exporter.py): the address option, and the HTTP
endpoint driven by a selector loop as the daemon drives it; a real TCP
socket on 127.0.0.1, urllib as the client; no root."""
import errno
import selectors
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from netfo import exporter
from netfo.config import Config
from netfo.errors import NetfoError
from netfo.exporter import Exporter, parse_listen

parser = pytest.importorskip("prometheus_client.parser")

TEXT = '# HELP netfo_failovers_total x\n# TYPE netfo_failovers_total counter\n' \
       'netfo_failovers_total{master="ens10"} 3\n'


@pytest.mark.parametrize("text, want", [
    ("127.0.0.1:9100", ("127.0.0.1", 9100)),
    ("[::1]:9100", ("::1", 9100)),
    ("[fd00::0001]:80", ("fd00::1", 80)),
    (":9100", ("", 9100)),
])
def test_good_addresses(text, want):
    assert parse_listen(text) == want
    assert Config(metrics_listen=text).metrics_listen == text


@pytest.mark.parametrize("text, says", [
    ("9100", "needs ADDR:PORT"),
    ("127.0.0.1:", "the port must be 1 to 65535"),
    ("127.0.0.1:0", "the port must be 1 to 65535"),
    ("127.0.0.1:65536", "the port must be 1 to 65535"),
    ("127.0.0.1:９１", "the port must be 1 to 65535"),
    ("localhost:9100", "'localhost' is not an IPv4 address or an [IPv6] address"),
    ("::1:9100", "is not an IPv4 address"),
    ("[::1:9100", "is not an IPv4 address"),
])
def test_bad_addresses_are_one_line_before_anything_runs(text, says):
    with pytest.raises(ValueError) as e:
        Config(metrics_listen=text)
    assert says in str(e.value) and str(e.value).startswith("--metrics-listen ")


def test_the_option_survives_restart():
    from netfo import cli
    c = Config(metrics_listen="[::1]:9105")
    assert cli.config_of(cli.parser().parse_args(["up", "ens10", *c.argv()])) == c


def test_a_port_in_use_is_one_clear_line():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    with holder, pytest.raises(NetfoError) as e:
        exporter.bind(f"127.0.0.1:{port}")
    assert str(e.value) == (f"--metrics-listen 127.0.0.1:{port}: port {port} is in use "
                            "(another program, or another netfo master, listens there)")


def test_an_address_not_here_is_one_clear_line():
    with pytest.raises(NetfoError) as e:
        exporter.bind("192.0.2.77:9100")             # TEST-NET-1: on no interface
    assert "no interface in this network namespace has the address 192.0.2.77" in str(e.value)


def test_a_low_port_says_why():
    e = OSError(errno.EACCES, "Permission denied")
    assert "CAP_NET_BIND_SERVICE" in exporter._why(e, "", 80)


@pytest.fixture
def served():
    """An Exporter on 127.0.0.1 served by a loop thread, as the daemon's."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    calls = []

    def render():
        calls.append(1)
        return TEXT
    exp = Exporter(sock, render)
    sel = selectors.DefaultSelector()
    exp.attach(sel)
    stop = threading.Event()
    turns = []

    def loop():
        while not stop.is_set():
            t = time.monotonic()
            for key, mask in sel.select(0.02):
                assert key.data is exp
                exp.ready(key, mask)
            exp.expire()
            turns.append(time.monotonic() - t)
    th = threading.Thread(target=loop, daemon=True)
    th.start()
    yield exp, f"http://127.0.0.1:{sock.getsockname()[1]}", calls, turns
    stop.set()
    th.join(2)
    exp.close()
    sel.close()


def get(url, method="GET"):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_get_metrics_is_the_rendered_text(served):
    exp, url, calls, _ = served
    status, headers, body = get(url + "/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["Content-Length"]) == len(body)
    fams = list(parser.text_string_to_metric_families(body.decode()))
    assert [(s.name, s.value) for f in fams for s in f.samples] == [("netfo_failovers_total", 3)]
    assert get(url + "/metrics?x=1")[0] == 200
    status, headers, body = get(url + "/metrics", "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(TEXT)


def test_anything_else_is_refused_without_rendering(served):
    exp, url, calls, _ = served
    assert get(url + "/")[0] == 404
    assert get(url + "/metricsx")[0] == 404
    assert get(url + "/metrics", "POST")[0] == 405
    assert calls == []


def raw(url, data: bytes, timeout=5.0) -> bytes:
    host, port = url[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as c:
        c.sendall(data)
        out = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_garbage_and_oversize_requests_get_an_error_status(served):
    exp, url, calls, _ = served
    assert raw(url, b"hello\r\n\r\n").startswith(b"HTTP/1.0 400 ")
    assert raw(url, b"GET /metrics HTTP/1.0\r\nX: " + b"a" * 10000).startswith(b"HTTP/1.0 431 ")
    assert raw(url, b"GET /metrics\r\n\r\n").startswith(b"HTTP/1.0 400 ")
    assert calls == []
    assert exp.clients == set()


def test_idle_clients_never_hold_up_the_loop_and_are_dropped(served, monkeypatch):
    exp, url, calls, turns = served
    monkeypatch.setattr(exporter, "DEADLINE", 0.3)
    host, port = url[len("http://"):].split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(exporter.MAX_CLIENTS)]
    idle[0].sendall(b"GET /metr")                       # a trickle that never ends
    time.sleep(0.1)
    over = socket.create_connection((host, int(port)))  # one too many: closed at once
    over.settimeout(2)
    assert over.recv(100) == b""
    time.sleep(0.5)                                     # past the deadline: all dropped
    assert exp.clients == set()
    for s in idle:
        s.settimeout(2)
        assert s.recv(100) == b""
        s.close()
    assert get(url + "/metrics")[0] == 200              # and scrapes go on
    assert max(turns) < 0.2, max(turns)                  # no turn ever waited on a client
