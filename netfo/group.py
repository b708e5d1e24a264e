"""The failover group as pure logic: link snapshots in, decisions out.

Nothing here touches the kernel, so every transition of net_failover's
behaviour (B-4..B-6, B-19, B-29..31, B-47..48 in the reference) can be unit
tested without root.  The daemon feeds it the links netlink reports and
carries out the actions it returns.
"""
from __future__ import annotations

import collections
import enum
import time
from dataclasses import dataclass, field
from typing import Optional

ARPHRD_ETHER = 1


class Role(enum.IntEnum):
    """The two slots of a group; values are the datapath's slot numbers."""
    PRIMARY = 0
    STANDBY = 1

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Link:
    """What netlink says about one interface at one moment."""
    index: int
    name: str
    mac: str
    perm_mac: Optional[str] = None
    up: bool = False              # IFF_UP
    carrier: bool = False         # IFF_LOWER_UP / IFLA_CARRIER
    mtu: int = 1500
    max_mtu: int = 0              # 0: the kernel did not say
    kind: Optional[str] = None    # IFLA_INFO_KIND (veth, tun, bridge, ...)
    arptype: int = ARPHRD_ETHER
    speed: int = 0                # Mbit/s, 0 unknown (for reselect=better)

    @property
    def ready(self) -> bool:
        """net_failover_xmit_ready(): running and carrier (B-19)."""
        return self.up and self.carrier

    @property
    def identity_mac(self) -> str:
        """The MAC that decides membership: permanent if known (B-4)."""
        return (self.perm_mac or self.mac).lower()


@dataclass
class Enslave:
    role: Role
    link: Link


@dataclass
class Release:
    role: Role
    link: Link
    gone: bool        # the interface was deleted (nothing left to undo on it)


@dataclass
class Ignore:
    link: Link
    reason: str


Action = object  # Enslave | Release | Ignore


RESELECT = ("always", "better", "failure")


@dataclass
class Policy:
    """How the transmitting slave is chosen (bonding's knobs, net_failover's
    defaults: no delays, the primary always wins)."""
    updelay: float = 0.0        # s a returning slave must stay ready before it takes over
    downdelay: float = 0.0      # s the master keeps carrier while no slave can transmit
    reselect: str = "always"    # when a ready primary takes over again (primary_reselect)

    def __post_init__(self) -> None:
        if self.reselect not in RESELECT:
            raise ValueError(f"reselect must be one of {', '.join(RESELECT)}")
        if self.updelay < 0 or self.downdelay < 0:
            raise ValueError("delays cannot be negative")


@dataclass
class Group:
    """One master, at most one primary and one standby (B-6).

    The transmitting slave is a state, not recomputed per frame as the kernel
    does (B-19), so that updelay, reselect and manual forcing can hold it;
    with the default Policy the result is the kernel's.  Every change is an
    event with its reason.
    """
    master: str
    mac: str
    standby_index: int
    pinned_primary: Optional[str] = None
    master_index: int = 0
    policy: Policy = field(default_factory=Policy)
    clock: object = time.monotonic
    slaves: dict = field(default_factory=dict)        # Role -> Link
    failovers: int = 0
    last_failover: Optional[float] = None
    forced: Optional[Role] = None
    events: collections.deque = field(default_factory=lambda: collections.deque(maxlen=100))
    _ignored: set = field(default_factory=set)
    _ready_since: dict = field(default_factory=dict)  # Role -> monotonic time
    broken: set = field(default_factory=set)          # roles whose probes fail
    _active: Optional[Role] = None
    _carrier_until: Optional[float] = None             # downdelay running out

    def __post_init__(self) -> None:
        self.mac = self.mac.lower()

    # -- queries ---------------------------------------------------------

    def active(self) -> Optional[Role]:
        """The slave that transmits now."""
        return self._active

    @property
    def carrier(self) -> bool:
        """Master carrier: on while some slave can transmit (B-29..31), and
        for downdelay after the last one stopped."""
        return self._active is not None or self._carrier_until is not None

    def next_deadline(self) -> Optional[float]:
        """When tick() must run next (a delay running out), or None."""
        times = [self._carrier_until] if self._carrier_until is not None else []
        if self.policy.updelay:
            times += [t + self.policy.updelay for r, t in self._ready_since.items()
                      if r != self._active]
        return min(times) if times else None

    def role_of(self, index: int) -> Optional[Role]:
        for role, link in self.slaves.items():
            if link.index == index:
                return role
        return None

    def wants(self, link: Link) -> Optional[Role]:
        """The role link should get, or None if it is not ours to take."""
        if link.index == self.standby_index:
            return Role.STANDBY
        if link.index == self.master_index or link.arptype != ARPHRD_ETHER:
            return None
        if link.kind in ("tun", "bridge", "bond", "team", "vlan", "macvlan"):
            return None
        if self.pinned_primary is not None:
            return Role.PRIMARY if link.name == self.pinned_primary else None
        if link.identity_mac != self.mac:
            return None
        return Role.PRIMARY

    # -- events ----------------------------------------------------------

    def link_changed(self, link: Link) -> list:
        """A link appeared or changed (RTM_NEWLINK)."""
        actions: list = []
        role = self.role_of(link.index)
        reason = "carrier"
        if role is not None:
            if self.slaves[role].up != link.up:
                reason = "admin"
            self.slaves[role] = link
        else:
            role = self.wants(link)
            if role is not None and link.index not in self._ignored:
                holder = self.slaves.get(role)
                if holder is None:
                    self.slaves[role] = link
                    actions.append(Enslave(role, link))
                else:
                    # B-6: a second device for a taken role stays standalone.
                    self._ignored.add(link.index)
                    actions.append(Ignore(link, f"{role} already present: {holder.name}"))
        self._reselect(reason)
        return actions

    def link_removed(self, index: int) -> list:
        """A link was deleted (RTM_DELLINK), e.g. the VF hot-unplugged."""
        self._ignored.discard(index)
        role = self.role_of(index)
        if role is None:
            return []
        link = self.slaves.pop(role)
        self.broken.discard(role)
        self._reselect("deleted")
        return [Release(role, link, gone=True)]

    def reject(self, role: Role) -> None:
        """Enslaving failed (e.g. MTU refused): forget it, leave it alone."""
        link = self.slaves.pop(role, None)
        if link is not None:
            self._ignored.add(link.index)
        self._reselect("refused")

    def force(self, role: Optional[Role]) -> None:
        """Manual control: prefer role while it is ready (None: automatic)."""
        self.forced = role
        self._reselect("manual")

    def path_down(self, role: Role, reason: str) -> None:
        """The path through role is broken although its link looks fine
        (probes unanswered): not ready until path_up()."""
        self.broken.add(role)
        self._reselect(reason)

    def path_up(self, role: Role) -> None:
        self.broken.discard(role)
        self._reselect("probe")

    def tick(self) -> None:
        """Let delays run out."""
        self._reselect("delay")

    # -- selection -------------------------------------------------------

    def _reselect(self, reason: str) -> None:
        now = self.clock()
        for role in Role:
            link = self.slaves.get(role)
            if link is not None and link.ready and role not in self.broken:
                self._ready_since.setdefault(role, now)
            else:
                self._ready_since.pop(role, None)
        new = self._choose(now)
        if new is None and self._active is not None and self.policy.downdelay:
            self._carrier_until = now + self.policy.downdelay
        elif new is not None or (self._carrier_until is not None and now >= self._carrier_until):
            self._carrier_until = None
        if new != self._active:
            old, self._active = self._active, new
            if old is not None:                 # the first selection is no failover
                self.failovers += 1
                self.last_failover = time.time()
            self.note(reason, new, old)

    def note(self, reason: str, to: Optional[Role], frm: Optional[Role] = None) -> None:
        """Record a switch (also one the datapath made by itself)."""
        link = self.slaves.get(to) if to is not None else None
        frm = self._active if frm is None and to != self._active else frm
        self.events.append({"time": time.time(), "from": _name(frm), "to": _name(to),
                            "slave": link.name if link else None, "reason": reason})

    def _choose(self, now: float) -> Optional[Role]:
        ready = [r for r in (Role.PRIMARY, Role.STANDBY) if r in self._ready_since]
        if not ready:
            return None
        # updelay: a slave that came back must stay ready a while before it
        # takes over, unless nothing else can transmit.
        settled = [r for r in ready if r == self._active
                   or now - self._ready_since[r] >= self.policy.updelay] or ready
        if self.forced in settled:
            return self.forced
        cur = self._active
        if cur in settled and cur != Role.PRIMARY:
            if self.policy.reselect == "failure":
                return cur                      # stay until the active one fails
            if (self.policy.reselect == "better" and Role.PRIMARY in settled
                    and not _faster(self.slaves[Role.PRIMARY], self.slaves[cur])):
                return cur
        return settled[0]


def _name(role: Optional[Role]) -> Optional[str]:
    return str(role) if role is not None else None


def _faster(a: Link, b: Link) -> bool:
    """bonding's 'better': a wins only with more speed (unknown counts as 0)."""
    return a.speed > b.speed
