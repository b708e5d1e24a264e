"""The failover group as pure logic: link snapshots in, decisions out.

Nothing here touches the kernel, so every transition of net_failover's
behaviour (B-4..B-6, B-19, B-29..31, B-47..48 in the reference) can be unit
tested without root.  The daemon feeds it the links netlink reports and
carries out the actions it returns.
"""
from __future__ import annotations

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


@dataclass
class Group:
    """One master, at most one primary and one standby (B-6)."""
    master: str
    mac: str
    standby_index: int
    pinned_primary: Optional[str] = None
    master_index: int = 0
    slaves: dict = field(default_factory=dict)        # Role -> Link
    failovers: int = 0
    last_failover: Optional[float] = None
    _ignored: set = field(default_factory=set)

    def __post_init__(self) -> None:
        self.mac = self.mac.lower()
        self._active = self.active()

    # -- queries ---------------------------------------------------------

    def active(self) -> Optional[Role]:
        """The slave that transmits: primary if ready, else standby (B-19)."""
        for role in (Role.PRIMARY, Role.STANDBY):
            link = self.slaves.get(role)
            if link is not None and link.ready:
                return role
        return None

    @property
    def carrier(self) -> bool:
        """Master carrier: on while some slave can transmit (B-29..31)."""
        return self.active() is not None

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
        if role is not None:
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
        self._note_switch()
        return actions

    def link_removed(self, index: int) -> list:
        """A link was deleted (RTM_DELLINK), e.g. the VF hot-unplugged."""
        self._ignored.discard(index)
        role = self.role_of(index)
        if role is None:
            return []
        link = self.slaves.pop(role)
        self._note_switch()
        return [Release(role, link, gone=True)]

    def reject(self, role: Role) -> None:
        """Enslaving failed (e.g. MTU refused): forget it, leave it alone."""
        link = self.slaves.pop(role, None)
        if link is not None:
            self._ignored.add(link.index)
        self._note_switch()

    def _note_switch(self) -> None:
        now = self.active()
        if now != self._active:
            if self._active is not None:     # first selection is no failover
                self.failovers += 1
                self.last_failover = time.time()
            self._active = now
