"""The sd_notify protocol, stdlib only: datagrams to $NOTIFY_SOCKET.

systemd (Type=notify) gives a service the address of a datagram socket in
NOTIFY_SOCKET: a path, or an abstract name written with a leading '@'.  A
message is newline-separated VAR=value assignments (READY=1, STATUS=...,
WATCHDOG=1, MAINPID=n, STOPPING=1, FDSTORE=1 with FDNAME=...); file
descriptors ride along as SCM_RIGHTS.  Every call here is a no-op (False)
when NOTIFY_SOCKET is unset, so the daemon calls them unconditionally.
"""
from __future__ import annotations

import array
import os
import socket
from typing import Iterable, Mapping, Optional, Sequence, Union

Env = Optional[Mapping[str, str]]


def address(env: Env = None) -> Optional[str]:
    """The socket address from NOTIFY_SOCKET ('@x' is abstract), or None."""
    path = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not path or not (path.startswith("/") or path.startswith("@")):
        return None             # unset, or a kind (vsock:) this module does not speak
    return "\0" + path[1:] if path.startswith("@") else path


def enabled(env: Env = None) -> bool:
    return address(env) is not None


def message(*lines: str, **fields: Union[str, int]) -> bytes:
    """'A=1\\nB=x' from ("A=1",) and B="x"; a value may not hold a newline."""
    parts = list(lines) + [f"{k}={v}" for k, v in fields.items()]
    for p in parts:
        if "\n" in p:
            raise ValueError(f"sd_notify: a newline in {p!r}")
    return "\n".join(parts).encode()


def notify(state: Union[str, bytes], fds: Sequence[int] = (), env: Env = None) -> bool:
    """Send state (with fds, SCM_RIGHTS); True if sent, False if there is no
    NOTIFY_SOCKET or it cannot be reached (the service manager went away:
    nothing a daemon should die of)."""
    addr = address(env)
    if addr is None:
        return False
    data = state.encode() if isinstance(state, str) else state
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendmsg([data], anc)
        return True
    except OSError:
        return False


# --------------------------------------------------------------- the messages

def ready(status: Optional[str] = None, env: Env = None) -> bool:
    return notify(message("READY=1", *([f"STATUS={status}"] if status else [])), env=env)


def status(text: str, env: Env = None) -> bool:
    return notify(message(STATUS=text), env=env)


def stopping(status: Optional[str] = None, env: Env = None) -> bool:
    return notify(message("STOPPING=1", *([f"STATUS={status}"] if status else [])), env=env)


def mainpid(pid: Optional[int] = None, env: Env = None) -> bool:
    """MAINPID=: a new process takes over as the service's main process
    (needs NotifyAccess=all when it is not the current main process)."""
    return notify(message(MAINPID=pid if pid is not None else os.getpid()), env=env)


def watchdog(env: Env = None) -> bool:
    return notify(b"WATCHDOG=1", env=env)


def fdstore(fds: Iterable[int], name: str, env: Env = None) -> bool:
    """Keep fds in the service manager's fd store under name (needs
    FileDescriptorStoreMax= > 0); a restarted service finds them in
    LISTEN_FDS/LISTEN_FDNAMES."""
    _check_fdname(name)
    return notify(message("FDSTORE=1", FDNAME=name), fds=list(fds), env=env)


def fdstore_remove(name: str, env: Env = None) -> bool:
    """Drop the stored fds named name (after `down`: they mean nothing any more)."""
    _check_fdname(name)
    return notify(message("FDSTOREREMOVE=1", FDNAME=name), env=env)


def _check_fdname(name: str) -> None:
    # sd_notify(3): up to 255 printable ASCII characters, no ':' (the
    # separator of LISTEN_FDNAMES).
    if not name or len(name) > 255 or ":" in name or not all(33 <= ord(c) < 127 for c in name):
        raise ValueError(f"sd_notify: bad FDNAME {name!r}")


def watchdog_interval(env: Env = None) -> Optional[float]:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC, as
    sd_watchdog_enabled(3) advises), or None: no watchdog, or one meant for
    another process (WATCHDOG_PID)."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 2e6
