"""The control server: one JSON request per connection, one JSON reply.

Requests go through one handler table; `status` has a versioned schema
(README: "netfo status --json").  The socket itself, and the client side,
are in control.py.
"""
from __future__ import annotations

import json
import logging
import os
import socket
from typing import Callable

from .errors import NetfoError
from .group import Role

log = logging.getLogger("netfo")

STATUS_VERSION = 1
ROLES = {"primary": Role.PRIMARY, "standby": Role.STANDBY, "auto": None}


class Server:
    """Answers requests about, and for, one daemon."""

    def __init__(self, sock: socket.socket, daemon):
        self.sock, self.d = sock, daemon
        self.handlers: dict = {"status": self.status, "set": self.set,
                               "events": self.events, "down": self.down}

    def fileno(self) -> int:
        return self.sock.fileno()

    def serve_one(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(5)
            try:
                line = conn.makefile().readline()
                if not line:
                    return              # a liveness probe (control.running)
                req = json.loads(line)
                if req.get("cmd") == "handover":      # the exchange owns the connection
                    return self.d.hand_over(conn)
                handler: Callable = self.handlers.get(req.get("cmd"))
                if handler is None:
                    reply = {"error": f"unknown command {req.get('cmd')!r}"}
                else:
                    try:
                        reply = handler(req)
                    except NetfoError as e:
                        reply = {"error": str(e)}
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except (ValueError, OSError) as e:
                # A client that went away must never take the daemon down.
                log.warning("control client: %s", e)

    # -- handlers ------------------------------------------------------------

    def set(self, req: dict) -> dict:
        """Manual control: force a slave to transmit, or go back to auto."""
        want = req.get("active")
        if want not in ROLES:
            return {"error": f"active must be primary, standby or auto, not {want!r}"}
        d = self.d.force(ROLES[want])
        return {"ok": True, "active": str(d.active) if d.active is not None else None}

    def events(self, req: dict) -> dict:
        """The event ring; with "since" (monotonic s) only newer events."""
        since = req.get("since")
        if since is not None and not isinstance(since, (int, float)):
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
            slaves.append({
                "role": str(role), "name": d.slaves[role].name, "index": link.index,
                "admin_up": link.up, "carrier": link.carrier, "ready": link.ready,
                "transmitting": role == active, "stats": stats["slots"][role],
            })
        drops = {k[len("drop_"):]: v for k, v in master.items() if k.startswith("drop_")}
        policy = g.policy
        return {
            "version": STATUS_VERSION,
            "master": {"name": d.ifname, "index": d.master_index, "mac": d.mac,
                       "mtu": d.slaves.mtu, "carrier": bool(d.carrier),
                       "stats": {k: v for k, v in master.items() if not k.startswith("drop_")
                                 and k not in ("send_failovers", "link_holds")}},
            "active": str(active) if active is not None else None,
            # the slot the loop transmits through now (equals "active" but
            # while a hold of the loop's own is being followed up)
            "loop_active": str(Role(slot)) if (slot := d.dp.active()) >= 0 else None,
            "rx_policy": d.config.rx_policy,
            "slaves": slaves,
            "drops": drops,
            "forced": str(g.forced) if g.forced is not None else None,
            "policy": {"updelay_ms": policy.updelay * 1000,
                       "downdelay_ms": policy.downdelay * 1000,
                       "reselect": policy.reselect, "miimon_ms": d.config.miimon_s * 1000},
            # the switches since the master came up (`netfo events` has them all)
            "events": g.switches(d.settled_at)[-5:],
            # the loop's own switches are counted once, when the group follows them
            "failovers": g.failovers,
            "loop_switches": master["link_holds"] + master["send_failovers"],
            "last_failover": g.last_failover,
            "pid": os.getpid(),
            "since": d.started,
            "adopted": d.adopted,
            "argv": d.config.argv(),          # what `netfo restart` starts the next daemon with
        }
