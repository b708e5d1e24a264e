"""Path probing: is a slave's path alive although its carrier is up?

A VF keeps carrier while the host's PF uplink or vSwitch black-holes it.
Like bonding's arp_interval/arp_validate and teamd's arp_ping, netfo sends
ARP requests (and IPv6 neighbour solicitations) for configured targets out
of the slave that transmits.  A slave's path counts as alive while it
receives ARP/ND frames from a target or from the master's own addresses:
the active slave gets the targets' replies, the other one the probes the
switch floods back to it (bonding's trick), so probing never needs to send
from the backup and never moves the switch's idea of where the MAC is.

The Prober judges: it says which slaves to probe out of and returns its
verdicts (a path went down / came back); the daemon sends the frames and
hands the verdicts to the group.  No socket here, so it is tested without root.
"""
from __future__ import annotations

import ipaddress
from typing import Iterable, NamedTuple, Optional

from .frames import arp_request, neighbour_solicitation, sender


class Verdict(NamedTuple):
    role: object        # group.Role
    up: bool            # False: the path went down; True: it answers again


class Prober:
    """Which slaves' paths are alive, from what their observers receive."""

    def __init__(self, targets4: list, targets6: list, interval: float, missed: int):
        self.targets4, self.targets6 = list(targets4), list(targets6)
        self.interval, self.missed = interval, missed
        self.last_heard: dict = {}          # role -> monotonic time
        self.down: set = set()              # roles whose path is judged down
        # What operators read (status, metrics), not what judges: rounds
        # in which a slave heard nothing, in a row and in all.
        self.misses: dict = {}              # role -> rounds missed in a row
        self.missed_total: dict = {}        # role -> rounds missed since enslaved
        self._answered: set = set()         # roles that heard something this round

    @property
    def enabled(self) -> bool:
        return bool(self.targets4 or self.targets6)

    @property
    def window(self) -> float:
        """s of silence after which a path is down."""
        return self.interval * self.missed

    def frames(self, mac: str, state: dict) -> list:
        """One round of probes, sent out of the transmitting slave."""
        src4 = state["ip4"][0] if state["ip4"] else None
        src6 = next((a for a in state["ip6"] if not ipaddress.IPv6Address(a).is_link_local),
                    state.get("link_local6"))
        out = [arp_request(mac, src4, t) for t in self.targets4]
        if src6:
            out += [neighbour_solicitation(mac, src6, t) for t in self.targets6]
        return out

    def heard(self, role, frame: bytes, own: set, now: float) -> None:
        ip = sender(frame)
        if ip is not None and (ip in self.targets4 or ip in self.targets6 or ip in own):
            self.last_heard[role] = now
            self._answered.add(role)

    def alive(self, role, now: float) -> bool:
        last = self.last_heard.setdefault(role, now)     # a new slave gets a grace period
        return now - last <= self.window

    def sources(self, transmitting: Optional[object], roles: Iterable) -> set:
        """The slaves to send this round's probes out of: the one that
        transmits, and every one whose path is down, or nothing would tell
        when it heals (when the active path dies, the other slave stops
        hearing the flooded probes too)."""
        out = {r for r in roles if r in self.down}
        if transmitting is not None:
            out.add(transmitting)
        return out

    def judge(self, roles: Iterable, active: Optional[object], now: float) -> list:
        """The paths that changed since the last round, the active one first."""
        roles = list(roles)
        self._count(roles)
        verdicts = []
        for role in sorted(roles, key=lambda r: r != active):
            alive = self.alive(role, now)
            if role == active and not alive:
                # The others heard the probes the switch flooded back from
                # this path: their silence says nothing now. Give them a
                # fresh grace period, probing through them directly.
                for other in roles:
                    if other != role:
                        self.last_heard[other] = now
            if not alive and role not in self.down:
                self.down.add(role)
                verdicts.append(Verdict(role, False))
            elif alive and role in self.down:
                self.down.discard(role)
                verdicts.append(Verdict(role, True))
        return verdicts

    def _count(self, roles: list) -> None:
        """One round is over: who heard nothing in it.  A slave's first
        round counts no miss (the answers to its first probes are due in
        the next one)."""
        for role in roles:
            if role not in self.misses:
                self.misses[role], self.missed_total[role] = 0, 0
            elif role in self._answered:
                self.misses[role] = 0
            else:
                self.misses[role] += 1
                self.missed_total[role] += 1
        self._answered.clear()

    def state(self, role) -> dict:
        """role's path as status shows it."""
        return {"up": role not in self.down, "misses": self.misses.get(role, 0),
                "missed_total": self.missed_total.get(role, 0)}

    def forget(self, role) -> None:
        """The slave left: a new one starts with a grace period, path up."""
        self.last_heard.pop(role, None)
        self.down.discard(role)
        self.misses.pop(role, None)
        self.missed_total.pop(role, None)
        self._answered.discard(role)
