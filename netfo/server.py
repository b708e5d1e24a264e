"""The control server: one JSON request per connection, one JSON reply;
or, for `{"cmd": "events", "follow": true}`, a subscription.

Requests go through one handler table; `status` has a versioned schema
(README: "netfo status --json").  The socket itself, the peers'
credentials and the client side are in control.py.

No client can hold up the daemon's control loop, which also follows
carrier, re-enslaves a re-plugged VF and probes: every connection is
non-blocking, registered in the loop's selector (`attach`) with a buffer
and one deadline for the whole request (`Conn`), and answered once its line
is complete; the reply goes out as the client reads it.  A request is
bounded in size, parsed and type-checked before any handler sees it
(`parse_request`), and no handler's failure gets further than an error
reply and the log.  Reading (`status`, `events`) is open to everyone in the
namespace; everything else needs root or CAP_NET_ADMIN.

A subscriber (`netfo events IF --follow`) gets the ring's events newer than
its "since", then each new event as the EventLog records it, one JSON line
each, pushed from the recording itself: its connection stays open, with no
deadline, for as long as it reads.  What it has not read yet waits in a
buffer of at most SUB_BUFFER bytes; one that lets it fill up is dropped
(its last line says how many events it missed), so a reader can neither
block the daemon nor make it grow.  When the daemon stops, each subscriber
gets a last line {"end": "down"} or, when a new daemon took the master over
(`netfo restart`), {"end": "handover"}: the client reconnects to the new one
and goes on after the last event it saw (CLOCK_MONOTONIC is machine-wide).
"""
from __future__ import annotations

import collections
import json
import logging
import math
import os
import selectors
import socket
import time
from typing import Optional

from . import __version__, control
from .errors import NetfoError
from .group import Role
from .kernel import links

log = logging.getLogger("netfo")

STATUS_VERSION = 1
# the loop's own moves (holds, falls over, recoveries): "loop_switches" in status
LOOP_SWITCHES = ("link_holds", "send_failovers", "link_recoveries")
ROLES = {"primary": Role.PRIMARY, "standby": Role.STANDBY, "auto": None}

MAX_REQUEST = 64 * 1024         # bytes in a request line
DEADLINE = 2.0                  # s from accept to the request's newline
REPLY_DEADLINE = 5.0            # s for the client to read its reply
MAX_CLIENTS = 64                # connections at once ...
MAX_PER_USER = 8                # ... of which one non-root uid may hold this many
SUB_BUFFER = 512 * 1024         # bytes a subscriber may leave unread (a full ring is ~200 KB)
SUB_CHUNK = 64 * 1024           # bytes handed to one send()
READS = frozenset({"status", "events"})       # open to every local user
# Each command's fields and their JSON types (bool is no number here).
FIELDS: dict = {"status": {}, "events": {"since": (int, float), "follow": (bool,)},
                "set": {"active": (str,)}, "down": {}, "handover": {}}


class RequestError(ValueError):
    """A request that is not one: answered with its message, never executed."""


def _kind(v) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def parse_request(line: bytes) -> dict:
    """One request line (without its newline) as a checked dict: a JSON
    object whose "cmd" is a known command and whose other fields are that
    command's, each of its type.  RequestError says what is wrong."""
    if len(line) > MAX_REQUEST:
        raise RequestError(f"request longer than {MAX_REQUEST} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("request is not UTF-8") from None
    try:
        req = json.loads(text)
    except RecursionError:
        raise RequestError("request nested too deeply") from None
    except ValueError as e:
        raise RequestError(f"request is not JSON: {e}") from None
    if not isinstance(req, dict):
        raise RequestError(f"request must be a JSON object, not {_kind(req)}")
    cmd = req.get("cmd")
    if not isinstance(cmd, str):
        raise RequestError(f"request needs \"cmd\" as a string, not {_kind(cmd)}")
    fields = FIELDS.get(cmd)
    if fields is None:
        raise RequestError(f"unknown command {cmd[:40]!r}")
    for name, value in req.items():
        if name == "cmd":
            continue
        types = fields.get(name)
        if types is None:
            raise RequestError(f"{cmd}: unknown field {name[:40]!r}")
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            want = " or ".join(sorted({_kind(t()) for t in types}))
            raise RequestError(f"{cmd}: {name} must be {want}, not {_kind(value)}")
    return req


class _Limited:
    """Warnings a client can provoke, at most `n` per `per` s (a local user
    must not be able to fill the log)."""

    def __init__(self, n: int = 10, per: float = 10.0, clock=time.monotonic):
        self.n, self.per, self.clock = n, per, clock
        self.since, self.count, self.dropped = -per, 0, 0

    def warn(self, fmt: str, *args) -> None:
        now = self.clock()
        if now - self.since >= self.per:
            if self.dropped:
                log.warning("control: %d more client warnings were not logged", self.dropped)
            self.since, self.count, self.dropped = now, 0, 0
        if self.count < self.n:
            self.count += 1
            log.warning("control client: " + fmt, *args)
        else:
            self.dropped += 1


class Conn:
    """One client: the bytes of its request so far and its deadline; then
    the reply still to send.  A subscriber ("live", or "closing" once it is
    dropped or the daemon stops) also has the lines queued behind `out`."""

    __slots__ = ("sock", "uid", "inbuf", "out", "deadline", "sub", "queue", "queued")

    def __init__(self, sock: socket.socket, uid: int, now: float):
        sock.setblocking(False)
        self.sock, self.uid = sock, uid
        self.inbuf: Optional[bytearray] = bytearray()
        self.out: Optional[memoryview] = None
        self.deadline = now + DEADLINE
        self.sub: Optional[str] = None
        self.queue: collections.deque = collections.deque()
        self.queued = 0                     # bytes in out and queue

    def fileno(self) -> int:
        return self.sock.fileno()


class Server:
    """Answers requests about, and for, one daemon."""

    def __init__(self, sock: Optional[socket.socket], daemon, clock=time.monotonic):
        self.sock, self.d, self.clock = sock, daemon, clock
        self.handlers: dict = {"status": self.status, "set": self.set,
                               "events": self.events, "down": self.down}
        self.conns: set = set()
        self.sel: Optional[selectors.BaseSelector] = None
        self.warn = _Limited(clock=clock).warn
        if sock is not None:
            sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    # -- the control loop's side: attach, ready, next_deadline, expire -------

    def attach(self, sel: selectors.BaseSelector) -> None:
        """Serve in the control loop's selector: its keys for the listening
        socket and every connection carry this server as their data."""
        self.sel = sel
        sel.register(self.sock, selectors.EVENT_READ, self)

    def ready(self, key: selectors.SelectorKey, mask: int) -> None:
        """A selector event of ours; never raises, never blocks (but for a
        root peer's handover, which owns its connection)."""
        conn = key.fileobj
        try:
            if conn is self.sock:
                self._accept()
            elif conn in self.conns:
                if conn.sub is not None:
                    self._sub_ready(conn, mask)
                elif conn.out is None:
                    self._read(conn)
                else:
                    self._write(conn)
        except Exception:
            log.exception("control: unexpected error (netfo keeps running)")
            if conn is not self.sock:
                self._close(conn)

    def next_deadline(self) -> Optional[float]:
        return min((c.deadline for c in self.conns if c.deadline != math.inf), default=None)

    def expire(self) -> None:
        """Drop the clients past their deadline (slow senders, or readers)."""
        now = self.clock()
        for conn in [c for c in self.conns if now >= c.deadline]:
            if conn.sub is not None:
                pass                    # dropped already (and said so), or the daemon stops
            elif conn.out is None:
                self.warn("uid %d: no complete request within %g s: closed", conn.uid, DEADLINE)
                self._try_send(conn, {"error": f"no complete request within {DEADLINE:g} s"})
            else:
                self.warn("uid %d: did not read its reply within %g s: closed",
                          conn.uid, REPLY_DEADLINE)
            self._close(conn)

    def close(self) -> None:
        for conn in list(self.conns):
            self._close(conn)

    def end(self, why: str) -> None:
        """The daemon stops ("down") or gave the master away ("handover"):
        each subscriber's last line says so (as far as its socket takes it
        without waiting), then EOF.  Other connections are left alone."""
        for conn in [c for c in self.conns if c.sub is not None]:
            if conn.sub == "live":
                self._queue(conn, json.dumps({"end": why}).encode() + b"\n")
                self._flush(conn)
            if conn in self.conns:
                self._close(conn)

    # -- connections ---------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(MAX_CLIENTS):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:            # EMFILE and such: the next turn retries
                self.warn("accept: %s", e)
                return
            try:
                uid = control.peer(sock).uid
            except OSError:
                uid = -1
            mine = sum(1 for c in self.conns if c.uid == uid)
            if len(self.conns) >= MAX_CLIENTS or (uid != 0 and mine >= MAX_PER_USER):
                self.warn("uid %d: too many connections: refused", uid)
                sock.close()
                continue
            conn = Conn(sock, uid, self.clock())
            self.conns.add(conn)
            self.sel.register(conn, selectors.EVENT_READ, self)

    def _read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(min(65536, MAX_REQUEST + 1 - len(conn.inbuf)))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.warn("uid %d: %s", conn.uid, e)
            return self._close(conn)
        if not data:
            if not conn.inbuf:                  # a liveness probe (control.running)
                return self._close(conn)
            line = bytes(conn.inbuf)            # the last line, without its newline
        else:
            conn.inbuf += data
            nl = conn.inbuf.find(b"\n")
            if nl < 0 and len(conn.inbuf) <= MAX_REQUEST:
                return                          # more to come, until the deadline
            line = bytes(conn.inbuf[:nl]) if nl >= 0 else bytes(conn.inbuf)
        conn.inbuf = None
        self._answer(conn, line)

    def _answer(self, conn: Conn, line: bytes) -> None:
        try:
            req = parse_request(line)
        except RequestError as e:
            self.warn("uid %d: %s", conn.uid, e)
            return self._reply(conn, {"error": str(e)})
        cmd = req["cmd"]
        if cmd not in READS:
            why = control.admin_refusal(conn.sock)
            if why is not None:
                self.warn("%s refused: %s", cmd, why)
                return self._reply(conn, {"error": f"{cmd} needs root (CAP_NET_ADMIN): {why} "
                                          "(status and events are open to every user)"})
        if cmd == "handover":                   # the exchange owns the connection
            return self._hand_over(conn)
        if cmd == "events" and req.get("follow"):
            return self._subscribe(conn, req)
        try:
            reply = self.handlers[cmd](req)
        except NetfoError as e:
            reply = {"error": str(e)}
        except Exception as e:
            log.exception("control: %s failed (netfo keeps running)", cmd)
            reply = {"error": f"{cmd} failed: {type(e).__name__}: {e} (see the daemon's log)"}
        self._reply(conn, reply)

    def _hand_over(self, conn: Conn) -> None:
        """A root peer's `netfo restart`: synchronous, as handover.give is."""
        self._forget(conn)
        try:
            conn.sock.setblocking(True)
            self.d.hand_over(conn.sock)
        except Exception:
            log.exception("control: handover failed (netfo serves on)")
        finally:
            conn.sock.close()

    def _reply(self, conn: Conn, reply: dict) -> None:
        try:
            data = json.dumps(reply).encode() + b"\n"
        except (TypeError, ValueError) as e:
            log.exception("control: reply not JSON")
            data = json.dumps({"error": f"reply not JSON: {e}"}).encode() + b"\n"
        conn.out = memoryview(data)
        conn.deadline = self.clock() + REPLY_DEADLINE
        self._write(conn)
        if conn in self.conns:
            self.sel.modify(conn, selectors.EVENT_WRITE, self)

    def _write(self, conn: Conn) -> None:
        try:
            n = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:                    # the client went away
            self.warn("uid %d: %s", conn.uid, e)
            return self._close(conn)
        conn.out = conn.out[n:]
        if not conn.out:
            self._close(conn)

    def _try_send(self, conn: Conn, reply: dict) -> None:
        try:
            conn.sock.send(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass

    # -- subscribers -----------------------------------------------------------

    def _subscribe(self, conn: Conn, req: dict) -> None:
        backlog = self.events(req)
        if "error" in backlog:
            return self._reply(conn, backlog)
        log_ = self.d.group.events
        if self.push not in log_.listeners:
            log_.listeners.append(self.push)
        conn.sub, conn.deadline = "live", math.inf
        for e in backlog["events"]:
            if conn.sub != "live":
                return                          # dropped: cannot take the ring
            self._queue(conn, json.dumps(e).encode() + b"\n")
            if conn.queued >= SUB_CHUNK:
                self._flush(conn)
        self._flush(conn)

    def push(self, e: dict) -> None:
        """EventLog's listener: the event, to every live subscriber."""
        subs = [c for c in self.conns if c.sub == "live"]
        if not subs:
            return
        line = json.dumps(e).encode() + b"\n"
        for conn in subs:
            self._queue(conn, line)
            self._flush(conn)

    def _queue(self, conn: Conn, line: bytes) -> None:
        if conn.sub == "live" and conn.queued + len(line) > SUB_BUFFER:
            return self._drop(conn)
        conn.queue.append(line)
        conn.queued += len(line)

    def _drop(self, conn: Conn) -> None:
        """A subscriber that lets SUB_BUFFER fill up: what it has not been
        sent is forgotten; it gets the rest of the line being sent, a last
        line saying how much it missed, REPLY_DEADLINE to read them, and is
        closed.  Nothing more is queued for it."""
        missed = len(conn.queue) + 1            # + the event that did not fit
        conn.queue.clear()
        conn.queued = len(conn.out) if conn.out is not None else 0
        conn.sub = "closing"
        conn.deadline = self.clock() + REPLY_DEADLINE
        self._queue(conn, json.dumps({"error": f"too slow: {missed} events dropped"}).encode()
                    + b"\n")
        self.warn("uid %d: subscriber read too slowly: %d events dropped, disconnected",
                  conn.uid, missed)

    def _flush(self, conn: Conn) -> None:
        """Send what the socket takes now; wait for EVENT_WRITE for the rest."""
        while conn.out is not None or conn.queue:
            if conn.out is None:
                chunk = [conn.queue.popleft()]
                size = len(chunk[0])
                while conn.queue and size + len(conn.queue[0]) <= SUB_CHUNK:
                    size += len(conn.queue[0])
                    chunk.append(conn.queue.popleft())
                conn.out = memoryview(b"".join(chunk))
            try:
                n = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:                     # the subscriber went away
                return self._close(conn)
            conn.out = conn.out[n:]
            conn.queued -= n
            if not conn.out:
                conn.out = None
        if conn.out is None and conn.sub == "closing":
            return self._close(conn)
        if conn in self.conns:
            mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out is not None else 0)
            try:
                if self.sel.get_key(conn).events != mask:
                    self.sel.modify(conn, mask, self)
            except (KeyError, ValueError, RuntimeError):
                pass            # the loop has ended (events of down): sent as far as they go

    def _sub_ready(self, conn: Conn, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            try:
                data = conn.sock.recv(4096)     # a subscriber has nothing more to say
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":                     # it went away
                return self._close(conn)
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)

    def _forget(self, conn: Conn) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            try:
                self.sel.unregister(conn)
            except (KeyError, ValueError, OSError, RuntimeError):
                pass

    def _close(self, conn: Conn) -> None:
        self._forget(conn)
        conn.sock.close()

    # -- handlers ------------------------------------------------------------

    def set(self, req: dict) -> dict:
        """Manual control: force a slave to transmit, or go back to auto."""
        want = req.get("active")
        if not isinstance(want, str) or want not in ROLES:
            return {"error": f"active must be primary, standby or auto, not {want!r}"}
        d = self.d.force(ROLES[want])
        return {"ok": True, "active": str(d.active) if d.active is not None else None}

    def events(self, req: dict) -> dict:
        """The event ring; with "since" (monotonic s) only newer events."""
        since = req.get("since")
        if since is not None and (isinstance(since, bool) or not isinstance(since, (int, float))
                                  or not math.isfinite(since)):
            return {"error": f"since must be a monotonic time in seconds, not {since!r}"}
        return {"events": self.d.group.events.since(since)}

    def down(self, req: dict) -> dict:
        self.d.stop.set()
        self.d.down()
        return {"ok": True}

    def status(self, req: dict) -> dict:
        d = self.d
        g = d.group
        stats = d.dp.stats()
        active = g.active()
        master = stats["master"]
        slaves = []
        for role in Role:
            link = g.slaves.get(role)
            if link is None or role not in d.slaves:
                continue
            name = d.slaves[role].name
            speed, duplex = links.speed_duplex(name, link.index)
            slaves.append({
                "role": str(role), "name": name, "index": link.index,
                "admin_up": link.up, "carrier": link.carrier, "ready": link.ready,
                "transmitting": role == active, "stats": stats["slots"][role],
                # what /proc/net/bonding shows of a slave (status -d)
                "mtu": link.mtu, "perm_mac": link.perm_mac, "speed": speed, "duplex": duplex,
                "link_failures": g.link_failures.get(role, 0),
                "probe": d.prober.state(role) if d.prober.enabled else None,
            })
        drops = {k[len("drop_"):]: v for k, v in master.items() if k.startswith("drop_")}
        # --queues: the master's counters of each queue (the totals above are their sums)
        per_queue = [{k: v for k, v in q["master"].items()
                      if k.split("_", 1)[1] in ("packets", "bytes", "dropped")}
                     for q in stats.get("queues", [stats])]
        policy = g.policy
        cfg = d.config
        return {
            "version": STATUS_VERSION,
            "master": {"name": d.ifname, "index": d.master_index, "mac": d.mac,
                       "mtu": d.slaves.mtu, "carrier": bool(d.carrier),
                       "stats": {k: v for k, v in master.items() if not k.startswith("drop_")
                                 and k not in LOOP_SWITCHES}},
            "active": str(active) if active is not None else None,
            # the slot the loop transmits through now (equals "active" but
            # while a hold of the loop's own is being followed up)
            "loop_active": str(Role(slot)) if (slot := d.dp.active()) >= 0 else None,
            "rx_policy": d.config.rx_policy,
            "queues": per_queue,
            "slaves": slaves,
            "drops": drops,
            "forced": str(g.forced) if g.forced is not None else None,
            "policy": {"updelay_ms": policy.updelay * 1000,
                       "downdelay_ms": policy.downdelay * 1000,
                       "reselect": policy.reselect, "miimon_ms": cfg.miimon_s * 1000,
                       "primary": cfg.primary, "notify_count": cfg.notify_count,
                       "notify_interval_ms": cfg.notify_interval},
            "probe": {"targets": [*cfg.arp_targets, *cfg.ns_targets],
                      "interval_ms": cfg.probe_interval, "missed": cfg.probe_missed},
            # the switches since the master came up (`netfo events` has them all)
            "events": g.switches(d.settled_at)[-5:],
            # the loop's own switches are counted once, when the group follows them
            "failovers": g.failovers,
            "loop_switches": sum(master[k] for k in LOOP_SWITCHES),
            "last_failover": g.last_failover,
            # the slaves' nft chains / sysctls put back after a firewall or
            # sysctl reload removed them (wall time of the last, or None)
            "silence": {"table": d.slaves.silencer.table, "reinstalls": d.slaves.reinstalls,
                        "last": d.slaves.last_reinstall},
            "pid": os.getpid(),
            "netfo_version": __version__,
            "since": d.started,
            "adopted": d.adopted,
            "argv": d.config.argv(),          # what `netfo restart` starts the next daemon with
        }
