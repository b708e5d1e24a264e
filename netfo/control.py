"""The daemon's control socket: one JSON request, one JSON reply.

The socket is abstract, and abstract Unix sockets belong to the network
namespace that made them: one guest per namespace can run `netfo up ens10`
and `status`/`down` reach the daemon of their own namespace.
"""
from __future__ import annotations

import json
import os
import socket
from typing import Optional


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
    """Ask the daemon for ifname; None when no daemon serves that name."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        s.connect(address(ifname))
    except (ConnectionRefusedError, FileNotFoundError):
        s.close()
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
