"""`netfo up --metrics-listen ADDR:PORT`: the metrics (metrics.py) over
HTTP, for Prometheus to scrape, served by the daemon's control loop.

The loop also follows carrier and probes, so a scraper must never hold it
up: as the control server (server.py) does, every connection is
non-blocking, registered in the loop's selector, bounded in size and in
time (one deadline from accept to the last byte of the reply), and
answered in one go with HTTP/1.0 and `Connection: close`.  Only
`GET /metrics` (and HEAD) is served; nothing a client sends gets further
than an error status.  No thread, no library: the daemon's only runtime
dependency stays pyroute2.

The socket lives in the daemon's network namespace: a guest's metrics are
reachable at the addresses of that namespace only.
"""
from __future__ import annotations

import errno
import ipaddress
import logging
import selectors
import socket
import time
from typing import Callable, Optional

from .errors import NetfoError
from .metrics import CONTENT_TYPE

log = logging.getLogger("netfo")

MAX_CLIENTS = 16                # connections at once; more are closed at accept
MAX_REQUEST = 8192              # bytes of request line and headers
DEADLINE = 5.0                  # s from accept to the last byte of the reply
BACKLOG = 16
PATH = "/metrics"


def parse_listen(text: str) -> tuple:
    """ADDR:PORT as (address, port): 127.0.0.1:9900, [::1]:9900, or :9900
    for every address (IPv6 and IPv4).  ValueError in one line: no host
    names, as the daemon resolves nothing."""
    head, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"--metrics-listen {text!r} needs ADDR:PORT, e.g. 127.0.0.1:9900")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"--metrics-listen {text!r}: the port must be 1 to 65535")
    port = int(port_text)
    if head == "":
        return "", port
    try:
        if head.startswith("[") and head.endswith("]"):
            return str(ipaddress.IPv6Address(head[1:-1])), port
        return str(ipaddress.IPv4Address(head)), port
    except ValueError:
        pass
    raise ValueError(f"--metrics-listen {text!r}: {head!r} is not an IPv4 address or an "
                     "[IPv6] address (e.g. 127.0.0.1:9900, [::1]:9900, or :9900 for all)")


def bind(text: str) -> socket.socket:
    """The listening socket for --metrics-listen text; NetfoError in one
    line when the address cannot be had (in use, not on this host, a port
    below 1024)."""
    addr, port = parse_listen(text)
    family = socket.AF_INET if "." in addr else socket.AF_INET6
    try:
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    except OSError as e:
        if addr or e.errno != errno.EAFNOSUPPORT:
            raise NetfoError(f"--metrics-listen {text}: {e.strerror}") from None
        family, sock = socket.AF_INET, socket.socket(socket.AF_INET,
                                                     socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        # A restarted daemon binds while the old one's scrapes are in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and not addr:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((addr or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise NetfoError(f"--metrics-listen {text}: {_why(e, addr, port)}") from None
    return sock


def _why(e: OSError, addr: str, port: int) -> str:
    if e.errno == errno.EADDRINUSE:
        return f"port {port} is in use (another program, or another netfo master, listens there)"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"no interface in this network namespace has the address {addr}"
    if e.errno == errno.EACCES:
        return (f"port {port} needs CAP_NET_BIND_SERVICE, which the daemon does not keep: "
                "use a port of 1024 or above")
    return e.strerror or str(e)


class Client:
    """One scraper: its request so far, then the reply still to send, then
    (after a request too large to read) what it still sends, read and
    dropped: closing on unread bytes would reset the connection, and the
    client could lose the reply."""

    __slots__ = ("sock", "inbuf", "out", "deadline", "drain")

    def __init__(self, sock: socket.socket, now: float):
        sock.setblocking(False)
        self.sock = sock
        self.inbuf = bytearray()
        self.out: Optional[memoryview] = None
        self.deadline = now + DEADLINE
        self.drain = False

    def fileno(self) -> int:
        return self.sock.fileno()


def response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
             head: bool = False, extra: str = "") -> bytes:
    return (f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n").encode() + \
        (b"" if head else body)


def answer(request: bytes, render: Callable[[], str]) -> bytes:
    """The whole reply to one request (line and headers)."""
    line = request.split(b"\n", 1)[0].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return response("400 Bad Request", b"bad request\n")
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    if method not in (b"GET", b"HEAD"):
        return response("405 Method Not Allowed", b"only GET\n", extra="Allow: GET, HEAD\r\n")
    if target != PATH.encode():
        return response("404 Not Found", b"netfo serves its metrics at /metrics\n",
                        head=method == b"HEAD")
    try:
        body = render().encode()
    except Exception:
        log.exception("metrics: rendering failed (netfo keeps running)")
        return response("500 Internal Server Error", b"see the daemon's log\n")
    return response("200 OK", body, CONTENT_TYPE, head=method == b"HEAD")


class Exporter:
    """Serves `render()` at /metrics from the control loop's selector."""

    def __init__(self, sock: socket.socket, render: Callable[[], str],
                 clock: Callable[[], float] = time.monotonic):
        self.sock, self.render, self.clock = sock, render, clock
        self.clients: set = set()
        self.sel: Optional[selectors.BaseSelector] = None

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def address(self) -> tuple:
        return self.sock.getsockname()

    # -- the control loop's side: attach, ready, next_deadline, expire, close

    def attach(self, sel: selectors.BaseSelector) -> None:
        self.sel = sel
        sel.register(self.sock, selectors.EVENT_READ, self)

    def ready(self, key: selectors.SelectorKey, mask: int) -> None:
        """A selector event of ours; never raises, never blocks."""
        obj = key.fileobj
        try:
            if obj is self.sock:
                self._accept()
            elif obj in self.clients:
                if obj.out is None:
                    self._read(obj)
                elif obj.out:
                    self._write(obj)
                else:
                    self._drain(obj)
        except Exception:
            log.exception("metrics: unexpected error (netfo keeps running)")
            if obj is not self.sock:
                self._close(obj)

    def next_deadline(self) -> Optional[float]:
        return min((c.deadline for c in self.clients), default=None)

    def expire(self) -> None:
        """Drop the scrapers past their deadline (slow senders or readers)."""
        now = self.clock()
        for c in [c for c in self.clients if now >= c.deadline]:
            self._close(c)

    def close(self) -> None:
        for c in list(self.clients):
            self._close(c)
        if self.sel is not None:
            try:
                self.sel.unregister(self.sock)
            except (KeyError, ValueError, OSError):
                pass
        self.sock.close()

    # -- connections ---------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(MAX_CLIENTS):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:                 # EMFILE and such: the next turn retries
                return
            if len(self.clients) >= MAX_CLIENTS:
                sock.close()
                continue
            c = Client(sock, self.clock())
            self.clients.add(c)
            self.sel.register(c, selectors.EVENT_READ, self)

    def _read(self, c: Client) -> None:
        try:
            data = c.sock.recv(MAX_REQUEST + 1 - len(c.inbuf))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self._close(c)
        c.inbuf += data
        complete = b"\r\n\r\n" in c.inbuf or b"\n\n" in c.inbuf
        if data and not complete and len(c.inbuf) <= MAX_REQUEST:
            return                          # more to come, until the deadline
        if not c.inbuf:
            return self._close(c)           # connected and went away
        if len(c.inbuf) > MAX_REQUEST:
            reply = response("431 Request Header Fields Too Large", b"request too large\n")
            c.drain = bool(data)
        else:
            reply = answer(bytes(c.inbuf), self.render)
        c.inbuf = bytearray()
        c.out = memoryview(reply)
        self.sel.modify(c, selectors.EVENT_WRITE, self)
        self._write(c)

    def _write(self, c: Client) -> None:
        try:
            n = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self._close(c)
        c.out = c.out[n:]
        if c.out:
            return
        if not c.drain:
            return self._close(c)
        try:
            c.sock.shutdown(socket.SHUT_WR)     # the reply is complete: the client sees EOF
        except OSError:
            return self._close(c)
        self.sel.modify(c, selectors.EVENT_READ, self)

    def _drain(self, c: Client) -> None:
        """Read what the client still sends until it closes (or the deadline)."""
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(c)

    def _close(self, c: Client) -> None:
        if c in self.clients:
            self.clients.discard(c)
            try:
                self.sel.unregister(c)
            except (KeyError, ValueError, OSError):
                pass
        c.sock.close()
