"""The daemon's control socket: one JSON request, one JSON reply (or, to
follow the events, a stream of them: `follow`).

The socket is abstract, and abstract Unix sockets belong to the network
namespace that made them: one guest per namespace can run `netfo up ens10`
and `status`/`down` reach the daemon of their own namespace.

An abstract socket has no file permissions: anyone in the namespace can
connect, and anyone can bind a free name.  So both ends look at the other's
credentials (SO_PEERCRED): the daemon lets only root or a CAP_NET_ADMIN
holder change anything (`admin_refusal`), and a client trusts an answer only
from a socket that root bound (`untrusted_server`).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import time
from typing import Iterator, NamedTuple, Optional

from .errors import NetfoError

SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)     # Linux >= 6.5


class Peer(NamedTuple):
    pid: int
    uid: int
    gid: int


def peer(sock: socket.socket) -> Peer:
    """The other end's pid/uid/gid (for a client: the process that listened)."""
    return Peer(*struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                     struct.calcsize("3i"))))


def _peer_pidfd(sock: socket.socket) -> Optional[int]:
    try:
        return struct.unpack("i", sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD, 4))[0]
    except OSError:                     # older kernel: the uid check below guards pid reuse
        return None


def _status_fields(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def admin_refusal(sock: socket.socket) -> Optional[str]:
    """None if the peer may change the daemon (uid 0, or CAP_NET_ADMIN in its
    effective set in the daemon's own user namespace); else why not.  A peer
    whose credentials cannot be read is refused."""
    try:
        pid, uid, _ = peer(sock)
    except OSError as e:
        return f"the client's credentials cannot be read ({e.strerror})"
    if uid == 0:
        return None
    if pid <= 0:
        return f"uid {uid}: the client's process cannot be seen from here"
    pidfd = _peer_pidfd(sock)
    try:
        try:
            st = _status_fields(pid)
            # The capabilities of a process in a user namespace of its own
            # (unshare -Ur) are over that namespace, not over this one.  Its
            # uid_map tells (world-readable, where /proc/PID/ns/user needs
            # CAP_SYS_PTRACE, which the daemon dropped): an unprivileged
            # user can only map its own uid, never the identity map of ours.
            mine, theirs = _uid_map("self"), _uid_map(pid)
            caps = int(st["CapEff"], 16)
            euid = int(st["Uid"].split()[1])
        except (OSError, KeyError, ValueError, IndexError) as e:
            return f"uid {uid}: the client's capabilities cannot be read ({e})"
        if pidfd is not None:
            try:
                signal.pidfd_send_signal(pidfd, 0)
            except ProcessLookupError:
                return f"uid {uid}: the client exited"
            except PermissionError:
                pass                    # alive, only not ours to signal
        if euid != uid:                 # pid reused since it connected, or it changed uid
            return f"uid {uid}: the client's process (pid {pid}) is not the one that connected"
        if mine != theirs:
            return f"uid {uid}: the client runs in another user namespace"
        from .privileges import CAP_NET_ADMIN    # ctypes: the daemon's, not every client's
        if not caps >> CAP_NET_ADMIN & 1:
            return f"uid {uid} without CAP_NET_ADMIN"
        return None
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _uid_map(pid) -> list:
    with open(f"/proc/{pid}/uid_map") as f:
        return [line.split() for line in f]


def untrusted_server(sock: socket.socket, ifname: str) -> Optional[str]:
    """None if a root process bound the socket sock is connected to; else
    the one line saying that this is not netfo's daemon."""
    try:
        pid, uid, _ = peer(sock)
    except OSError as e:
        return f"cannot read who serves the control socket @netfo/{ifname} ({e.strerror})"
    if uid != 0:
        return (f"the control socket @netfo/{ifname} is held by pid {pid} (uid {uid}), not by "
                "netfo (which runs as root): its answer is not trusted")
    return None


class UntrustedServer(NetfoError):
    """The control socket's name is held by a process that is not root's."""


RUN_DIR = "/run/netfo"


def run_path(ifname: str, suffix: str) -> str:
    """A daemon file (log, journal), per network namespace like the socket."""
    try:
        netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        netns = 0
    os.makedirs(RUN_DIR, exist_ok=True)
    return os.path.join(RUN_DIR, f"net{netns}-{ifname}.{suffix}")


def address(ifname: str) -> str:
    return "\0netfo/" + ifname


def listen(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.bind(address(ifname))
    except OSError:
        s.close()
        raise
    s.listen(8)
    return s


def request(ifname: str, cmd: str, timeout: float = 10.0, **args) -> Optional[dict]:
    """Ask the daemon for ifname; None when no daemon serves that name.
    UntrustedServer (a NetfoError: one line) when a non-root process holds
    the name."""
    s = _connect(ifname, timeout)
    if s is None:
        return None
    with s:
        s.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data) if data else {"error": "daemon closed the connection"}


HANDOVER_WAIT = 10.0    # s a follower waits for the daemon that took the master over


def _connect(ifname: str, timeout: Optional[float]) -> Optional[socket.socket]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        s.connect(address(ifname))
    except (ConnectionRefusedError, FileNotFoundError):
        s.close()
        return None
    why = untrusted_server(s, ifname)
    if why is not None:
        s.close()
        raise UntrustedServer(why)
    return s


def follow(ifname: str, since: Optional[float] = None,
           handover_wait: float = HANDOVER_WAIT) -> Iterator[dict]:
    """The master's events as the daemon records them: first those of its
    ring newer than since (monotonic s; all when None), then each new one,
    pushed by the daemon (server.py, "subscribers").  Ends when the daemon
    goes down; across `netfo restart` it follows the new daemon, from the
    last event seen.  NetfoError (one line): no daemon, an error from it
    (this reader was too slow, an older daemon), or the daemon vanished."""
    first = True
    while True:
        s = _connect(ifname, 10.0)
        if s is None and not first:             # the new daemon binds once it has the master
            deadline = time.monotonic() + handover_wait
            while s is None and time.monotonic() < deadline:
                time.sleep(0.02)
                s = _connect(ifname, 10.0)
        if s is None:
            raise NetfoError(f"netfo is not running on {ifname} in this network namespace"
                             if first else f"{ifname}: no daemon took the master over within "
                             f"{handover_wait:g} s of the handover")
        first = False
        with s:
            req = {"cmd": "events", "follow": True, **({} if since is None else {"since": since})}
            s.sendall(json.dumps(req).encode() + b"\n")
            s.settimeout(None)                  # events come when they happen
            end = None
            for line in s.makefile("rb"):
                if not line.endswith(b"\n"):
                    break                       # cut short: the daemon died while writing
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(obj, dict):
                    continue
                if "error" in obj:
                    err = str(obj["error"])
                    if "unknown field 'follow'" in err:
                        err = (f"the daemon on {ifname} is older than this netfo and cannot "
                               f"push events: `netfo restart {ifname}` first")
                    raise NetfoError(err)
                if "end" in obj:
                    end = obj["end"]
                    break
                if "mono" in obj:
                    since = obj["mono"]
                yield obj
        if end == "handover":
            continue
        if end == "down":
            return
        raise NetfoError(f"the daemon on {ifname} went away without a word (see its log)")


def running(ifname: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.connect(address(ifname))
        return True
    except OSError:
        return False
    finally:
        s.close()


def list_daemons() -> list:
    """Names served by daemons in this namespace (from /proc/net/unix)."""
    out = []
    try:
        with open("/proc/net/unix") as f:
            for line in f:
                path = line.split()[-1]
                if path.startswith("@netfo/") and line.split()[3] == "00010000":  # listening
                    out.append(path[len("@netfo/"):])
    except OSError:
        pass
    return sorted(set(out))
