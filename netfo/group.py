"""The failover group as pure logic: inputs in, one Decision out.

Nothing here touches the kernel, so every transition of net_failover's
behaviour (B-4..B-6, B-19, B-29..31, B-47..48 in the reference) can be unit
tested without root.  Every input (a link changed or was removed, enslaving
was refused, a manual force, a path judged down or up, a tick, a switch the
datapath made by itself) returns one Decision: who transmits, which slaves
are ready, the master's carrier, whether to announce, and what to enslave,
release or ignore.  The daemon executes decisions and derives nothing.

The group is in one of four states; the allowed moves are the TRANSITIONS
table (after pyroute2's dhcp/fsm.py: explicit states, a table of allowed
transitions, a guard that refuses the rest).  Both clocks are injected:
monotonic for delays, wall for what people read.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .events import EventLog

ARPHRD_ETHER = 1


class Role(enum.IntEnum):
    """The two slots of a group; values are the datapath's slot numbers."""
    PRIMARY = 0
    STANDBY = 1

    def __str__(self) -> str:
        return self.name.lower()


class State(enum.Enum):
    """What the master does now."""
    DOWN = "down"           # no slave transmits, master carrier off (B-29)
    HOLDING = "holding"     # no slave transmits, downdelay keeps the master's carrier
    PRIMARY = "primary"     # the primary transmits
    STANDBY = "standby"     # the standby transmits


# Allowed moves between states; anything else is a bug and raises.
# (DOWN -> HOLDING is not allowed: downdelay only holds a carrier the master had.)
TRANSITIONS: dict = {
    State.DOWN: {State.PRIMARY, State.STANDBY},
    State.HOLDING: {State.DOWN, State.PRIMARY, State.STANDBY},
    State.PRIMARY: {State.STANDBY, State.HOLDING, State.DOWN},
    State.STANDBY: {State.PRIMARY, State.HOLDING, State.DOWN},
}
CARRIER = {State.DOWN: False, State.HOLDING: True, State.PRIMARY: True, State.STANDBY: True}
TRANSMITS = {State.DOWN: None, State.HOLDING: None,
             State.PRIMARY: Role.PRIMARY, State.STANDBY: Role.STANDBY}
TRANSMITTING = {Role.PRIMARY: State.PRIMARY, Role.STANDBY: State.STANDBY}


class Input(enum.Enum):
    """What a Decision answers."""
    LINK = "link"                # RTM_NEWLINK, or a live carrier read (miimon)
    REMOVED = "removed"          # RTM_DELLINK
    REJECT = "reject"            # enslaving failed
    FORCE = "force"              # netfo set IF active ...
    PATH_DOWN = "path-down"      # the prober's verdict
    PATH_UP = "path-up"
    TICK = "tick"                # a delay may have run out
    LOOP = "loop"                # the datapath switched by itself


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


@dataclass(frozen=True)
class Decision:
    """The group's answer to one input; the daemon carries it out."""
    input: Input
    state: State
    active: Optional[Role]        # the slave that transmits (the loop's preferred slot)
    ready: frozenset              # slaves the loop may use (admin up and carrier)
    carrier: bool                 # the master's carrier
    announce: bool                # tell the network where the master is now
    actions: tuple = ()           # Enslave / Release / Ignore, in order
    events: tuple = ()            # the events this input recorded

    def then(self, later: "Decision") -> "Decision":
        """This decision followed by a later one (an action's consequence):
        the later state wins, announcements and events add up."""
        return Decision(later.input, later.state, later.active, later.ready, later.carrier,
                        self.announce or later.announce, self.actions + later.actions,
                        self.events + later.events)


@dataclass
class Policy:
    """How the transmitting slave is chosen (bonding's knobs, net_failover's
    defaults: no delays, the primary always wins).  Checked by Config."""
    updelay: float = 0.0        # s a returning slave must stay ready before it takes over
    downdelay: float = 0.0      # s the master keeps carrier while no slave can transmit
    reselect: str = "always"    # when a ready primary takes over again (primary_reselect)


class TransitionError(RuntimeError):
    """A move the TRANSITIONS table does not allow (a bug in the group)."""


@dataclass
class Group:
    """One master, at most one primary and one standby (B-6).

    The transmitting slave is a state, not recomputed per frame as the kernel
    does (B-19), so that updelay, reselect and manual forcing can hold it;
    with the default Policy the result is the kernel's.
    """
    master: str
    mac: str
    standby_index: int
    pinned_primary: Optional[str] = None
    master_index: int = 0
    policy: Policy = field(default_factory=Policy)
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    events: Optional[EventLog] = None
    # what the datapath transmits through now and since when (monotonic s):
    # a switch the loop made first is dated by it (the daemon's; None: none)
    loop: Optional[Callable[[], tuple]] = None
    slaves: dict = field(default_factory=dict)        # Role -> Link
    failovers: int = 0
    last_failover: Optional[float] = None             # wall time
    # Role -> times its slave stopped being usable (carrier lost, admin
    # down, path judged down) since it was enslaved: bonding's "Link
    # Failure Count" (a deletion is no failure: the slave is gone with it)
    link_failures: dict = field(default_factory=dict)
    forced: Optional[Role] = None
    state: State = State.DOWN
    broken: set = field(default_factory=set)          # roles whose path the prober judged down
    sending: Optional[Role] = None                    # what the loop transmits through, as known
    _ignored: set = field(default_factory=set)
    _ready_since: dict = field(default_factory=dict)  # Role -> monotonic time
    _carrier_until: Optional[float] = None            # downdelay running out
    _announce: bool = False
    _recorded: list = field(default_factory=list)     # events of the input being handled

    def __post_init__(self) -> None:
        self.mac = self.mac.lower()
        if self.events is None:
            self.events = EventLog(self.master, self.clock, self.wall)

    # -- queries ---------------------------------------------------------

    def active(self) -> Optional[Role]:
        """The slave that transmits now."""
        return TRANSMITS[self.state]

    def takeover(self) -> Optional[Role]:
        """The slave the datapath may take by itself the moment its link
        runs (Datapath.set_takeover), as net_failover's per-frame check
        does: the primary, while nothing may hold it back (reselect
        always, no updelay, no manual choice of the standby, no path judged
        down); otherwise None."""
        if (self.policy.reselect == "always" and not self.policy.updelay
                and self.forced in (None, Role.PRIMARY) and Role.PRIMARY not in self.broken):
            return Role.PRIMARY
        return None

    @property
    def carrier(self) -> bool:
        """Master carrier: on while some slave can transmit (B-29..31), and
        for downdelay after the last one stopped."""
        return CARRIER[self.state]

    def next_deadline(self) -> Optional[float]:
        """When tick() must run next (a delay running out), or None."""
        times = [self._carrier_until] if self._carrier_until is not None else []
        if self.policy.updelay:
            times += [t + self.policy.updelay for r, t in self._ready_since.items()
                      if r != self.active()]
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

    def switches(self, since: Optional[float] = None) -> list:
        """The switch events (all, or newer than monotonic time since)."""
        return self.events.of("switch", since)

    def settled(self) -> None:
        """Setup is over: the slaves found at `up` were no failover."""
        self.failovers, self.last_failover = 0, None
        self.link_failures = {role: 0 for role in self.slaves}

    # -- inputs ----------------------------------------------------------

    def link_changed(self, link: Link) -> Decision:
        """A link appeared or changed (RTM_NEWLINK)."""
        self._begin()
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
                    self.link_failures[role] = 0
                    actions.append(Enslave(role, link))
                else:
                    # B-6: a second device for a taken role stays standalone.
                    self._ignored.add(link.index)
                    actions.append(Ignore(link, f"{role} already present: {holder.name}"))
        self._reselect(reason)
        return self._decide(Input.LINK, actions)

    def link_removed(self, index: int) -> Decision:
        """A link was deleted (RTM_DELLINK), e.g. the VF hot-unplugged."""
        self._begin()
        self._ignored.discard(index)
        role = self.role_of(index)
        if role is None:
            return self._decide(Input.REMOVED)
        link = self.slaves.pop(role)
        self.broken.discard(role)
        self.link_failures.pop(role, None)
        self._reselect("deleted")
        return self._decide(Input.REMOVED, [Release(role, link, gone=True)])

    def reject(self, role: Role) -> Decision:
        """Enslaving failed (e.g. MTU refused): forget it, leave it alone."""
        self._begin()
        link = self.slaves.pop(role, None)
        self.link_failures.pop(role, None)
        if link is not None:
            self._ignored.add(link.index)
        self._reselect("refused")
        return self._decide(Input.REJECT)

    def force(self, role: Optional[Role]) -> Decision:
        """Manual control: prefer role while it is ready (None: automatic)."""
        self._begin()
        self.forced = role
        self._reselect("manual")
        return self._decide(Input.FORCE)

    def path_down(self, role: Role, reason: str = "probe") -> Decision:
        """The path through role is broken although its link looks fine
        (probes unanswered): not used until path_up()."""
        self._begin()
        if role not in self.broken:
            self.broken.add(role)
            self._path_event(role, False)
        self._reselect(reason)
        return self._decide(Input.PATH_DOWN)

    def path_up(self, role: Role) -> Decision:
        self._begin()
        if role in self.broken:
            self.broken.discard(role)
            self._path_event(role, True)
        self._reselect("probe")
        return self._decide(Input.PATH_UP)

    def tick(self) -> Decision:
        """Let delays run out."""
        self._begin()
        self._reselect("delay")
        return self._decide(Input.TICK)

    def loop_switched(self, to: Optional[Role], reason: Optional[str] = None) -> Decision:
        """The datapath transmits through `to` although the group did not say
        so: it held a slave down by itself (a send error: reason
        "send-error", recorded as a switch; a link event it read itself:
        None, not recorded, netlink's event that follows says why).  The
        group's own choice stands (the loop falls back to it when the hold
        ends); only the announcement follows the frames."""
        self._begin()
        if reason is not None:
            self._switch_event(reason, to, self.active() if to != self.active() else None)
        self._follow(to)
        return self._decide(Input.LOOP)

    # -- the machine -----------------------------------------------------

    def _begin(self) -> None:
        self._recorded = []
        self._announce = False

    def _decide(self, what: Input, actions: Optional[list] = None) -> Decision:
        ready = frozenset(r for r, l in self.slaves.items() if l.ready)
        return Decision(what, self.state, self.active(), ready, self.carrier, self._announce,
                        tuple(actions or ()), tuple(self._recorded))

    def _reselect(self, reason: str) -> None:
        now = self.clock()
        for role in Role:
            link = self.slaves.get(role)
            if link is not None and link.ready and role not in self.broken:
                self._ready_since.setdefault(role, now)
            elif self._ready_since.pop(role, None) is not None and link is not None:
                self.link_failures[role] = self.link_failures.get(role, 0) + 1
        new = self._choose(now)
        if new is not None:
            self._carrier_until = None
            target = TRANSMITTING[new]
        elif self.active() is not None and self.policy.downdelay:
            self._carrier_until = now + self.policy.downdelay
            target = State.HOLDING
        elif self._carrier_until is not None and now < self._carrier_until:
            target = State.HOLDING
        else:
            self._carrier_until = None
            target = State.DOWN
        self._enter(target, reason)

    def _enter(self, target: State, reason: str) -> None:
        old = self.state
        if target == old:
            return
        if target not in TRANSITIONS[old]:
            raise TransitionError(f"{self.master}: no transition {old.value} -> {target.value}")
        self.state = target
        frm, to = TRANSMITS[old], TRANSMITS[target]
        if frm != to:
            if frm is not None:                 # the first selection is no failover
                self.failovers += 1
                self.last_failover = self.wall()
            self._switch_event(reason, to, frm)
            self._follow(to)
        if CARRIER[old] != CARRIER[target]:
            self._record("carrier", carrier=CARRIER[target])

    def _follow(self, to: Optional[Role]) -> None:
        """Frames now leave through `to`: announce it (once per move)."""
        if to != self.sending:
            self.sending = to
            self._announce = self._announce or to is not None

    def _choose(self, now: float) -> Optional[Role]:
        ready = [r for r in (Role.PRIMARY, Role.STANDBY) if r in self._ready_since]
        if not ready:
            return None
        cur = self.active()
        # updelay: a slave that came back must stay ready a while before it
        # takes over, unless nothing else can transmit.
        settled = [r for r in ready if r == cur
                   or now - self._ready_since[r] >= self.policy.updelay] or ready
        if self.forced in settled:
            return self.forced
        if cur in settled and cur != Role.PRIMARY:
            if self.policy.reselect == "failure":
                return cur                      # stay until the active one fails
            if (self.policy.reselect == "better" and Role.PRIMARY in settled
                    and not _faster(self.slaves[Role.PRIMARY], self.slaves[cur])):
                return cur
        return settled[0]

    # -- events ----------------------------------------------------------

    def _record(self, kind: str, **fields) -> dict:
        e = self.events.record(kind, **fields)
        self._recorded.append(e)
        return e

    def _switch_event(self, reason: str, to: Optional[Role], frm: Optional[Role]) -> None:
        link = self.slaves.get(to) if to is not None else None
        fields = {"from": _name(frm), "to": _name(to), "slave": link.name if link else None,
                  "reason": reason}
        if self.loop is not None:
            sending, since = self.loop()
            if sending == to and since:
                fields["loop_mono"] = since     # the frames moved then, not now
        self._record("switch", **fields)

    def _path_event(self, role: Role, up: bool) -> None:
        link = self.slaves.get(role)
        self._record("path", role=str(role), slave=link.name if link else None, up=up)


def _name(role: Optional[Role]) -> Optional[str]:
    return str(role) if role is not None else None


def _faster(a: Link, b: Link) -> bool:
    """bonding's 'better': a wins only with more speed (unknown counts as 0)."""
    return a.speed > b.speed
