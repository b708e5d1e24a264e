"""Handing a master to a new daemon without a flap, and taking it back
from systemd's fd store.

A planned restart (`netfo restart IF`, systemd's reload, an upgrade) starts
a new daemon that asks the running one, over the control socket, for its
file descriptors: the TAP and the slaves' packet sockets, for each queue
(--queues), queue 0's first, as a daemon before --queues sent them.  The old one
sends them (SCM_RIGHTS) and keeps forwarding while the new one prepares
everything; when the new one says "release", the old one stops its loops,
closes its control socket, answers, and exits without restoring anything.
The new loops start at once: the TAP never loses its last fd (so its carrier
never drops), and frames that arrive meanwhile wait in the TAP's and the
sockets' queues.  If the new daemon fails before "release", it closes the
connection and the old one goes on as if nothing had happened.

After a crash under systemd, the TAP fd the daemon stored with
`FDSTORE=1` / `FDNAME=tap-IF` comes back in LISTEN_FDS (sd_listen_fds(3)).
"""
from __future__ import annotations

import array
import json
import logging
import os
import socket
from typing import Optional

from . import control
from .config import MAX_QUEUES
from .errors import NetfoError
from .service import fdname

log = logging.getLogger("netfo")

SD_LISTEN_FDS_START = 3
MAX_FDS = 3 * MAX_QUEUES        # per queue: TAP, primary, standby
TIMEOUT = 10.0                  # s for each step of the exchange


def from_systemd(ifname: str) -> Optional[int]:
    """The TAP fd systemd hands back (LISTEN_FDS, named tap-IFNAME), or None.
    The other fds passed are closed: nothing else is expected."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        n = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    found = None
    for i in range(n):
        fd = SD_LISTEN_FDS_START + i
        if found is None and i < len(names) and names[i] == fdname(ifname):
            os.set_inheritable(fd, False)
            found = fd
        else:
            try:
                os.close(fd)
            except OSError:
                pass
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)           # not for our children
    return found


# -- the old daemon's side ---------------------------------------------------

def give(conn: socket.socket, state: dict, fds: list, release) -> bool:
    """Send state and fds, wait for "release", then call release() (which
    stops forwarding) and confirm.  False: the new daemon gave up."""
    conn.settimeout(TIMEOUT)
    payload = json.dumps(state).encode() + b"\n"
    conn.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    line = conn.makefile("rb").readline()
    try:
        if json.loads(line).get("cmd") != "release":
            return False
    except ValueError:
        return False
    release()
    conn.sendall(b'{"released": true}\n')
    return True


# -- the new daemon's side ---------------------------------------------------

class Taker:
    """The new daemon's end: ask(), prepare with the fds, release()."""

    def __init__(self, ifname: str):
        self.ifname = ifname
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(TIMEOUT)

    def ask(self) -> tuple:
        """(the old daemon's state, per queue [tap fd, then a socket per
        state["slots"] entry]); state["queues"] is the number of queues."""
        try:
            self.sock.connect(control.address(self.ifname))
        except OSError:
            raise NetfoError(f"netfo is not running on {self.ifname}: nothing to "
                                  "hand over") from None
        why = control.untrusted_server(self.sock, self.ifname)
        if why is not None:             # fds from a stranger are no master
            raise ConnectionError(why)
        self.sock.sendall(json.dumps({"cmd": "handover"}).encode() + b"\n")
        fds = array.array("i")
        data, anc, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(raw[:len(raw) - len(raw) % fds.itemsize])
        for fd in fds:
            os.set_inheritable(fd, False)
        while not data.endswith(b"\n"):
            more = self.sock.recv(1 << 20)
            if not more:
                break
            data += more
        state = json.loads(data or b"{}")
        if "error" in state:
            for fd in fds:
                os.close(fd)
            raise NetfoError(state["error"])
        per = len(state.get("slots", [])) + 1
        state["queues"] = n = state.get("queues", 1)     # a daemon before --queues: 1
        got = [fds[i] if i < len(fds) else -1 for i in range(n * per)]
        return state, [got[q * per:(q + 1) * per] for q in range(n)]

    def release(self) -> None:
        """Tell the old daemon to stop forwarding; returns once it has."""
        self.sock.sendall(b'{"cmd": "release"}\n')
        reply = self.sock.makefile("rb").readline()
        if not reply or not json.loads(reply).get("released"):
            raise NetfoError("the old daemon did not release the master")

    def close(self) -> None:
        self.sock.close()
