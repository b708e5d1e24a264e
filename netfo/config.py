"""Every `netfo up` option, its default, its help text and its check, once.

The CLI builds its argparse options from these fields (flag, metavar, help
and default come from the field), re-creates the command line for the
detached daemon from a Config (`argv()`), and the daemon takes one Config.
Before, the daemon's own keyword defaults drifted from the CLI's
(notify_interval 0 against 200 ms): with one table that cannot happen.

Times are kept in the units the user types (ms, us); the daemon reads the
seconds through the `*_s` properties.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Optional

RX_POLICIES = ("active", "kernel", "all")
RESELECT = ("always", "better", "failure")
TAP_IO = ("syscalls", "uring", "uring-write", "auto")
IFNAMSIZ = 16
MAX_MS = 3_600_000          # an hour: any interval or delay beyond is a typo
MAX_BUSY_POLL_US = 1_000_000
MAX_COUNT = 255             # as bonding's num_grat_arp
MAX_QUEUES = 16             # TAP queues (the kernel takes 256; a handover passes 3 fds each)


def ifname_problem(name: str, what: str = "interface name") -> Optional[str]:
    """What makes name one the kernel refuses (dev_valid_name: 1 to 15
    bytes, not "." or "..", no '/', ':' or whitespace), in one line."""
    raw = name.encode("utf-8", "surrogateescape")
    if not raw:
        return f"{what} is empty"
    if len(raw) >= IFNAMSIZ:
        return f"{what} {name!r} is too long: at most {IFNAMSIZ - 1} bytes"
    if name in (".", ".."):
        return f"{what} {name!r} is not valid: an interface name cannot be . or .."
    # the kernel's isspace(): also \v, \f and 0xa0 (a byte of some UTF-8 characters)
    if any(b in b"/:\0 \t\n\v\f\r\xa0" for b in raw):
        return (f"{what} {name!r} is not valid: an interface name has no '/', ':', "
                f"whitespace or NUL")
    return None


def _opt(default, help: str, metavar: Optional[str] = None, choices=None, flag: Optional[str] = None):
    return field(default=default, metadata={"help": help, "metavar": metavar,
                                            "choices": choices, "flag": flag})


@dataclass(frozen=True)
class Config:
    primary: Optional[str] = _opt(None, "pin the primary by name", metavar="IF")
    rx_policy: str = _opt(
        "active", "frames from the slave that does not transmit: drop them (active, "
        "default), drop standby frames while a primary exists (kernel), or deliver them (all)",
        choices=RX_POLICIES)
    threads: int = _opt(
        1, "datapath threads: one loop for both directions (default; it measured better "
        "on 2 cores), or one per direction", choices=(1, 2))
    queues: int = _opt(
        1, "datapath queue pairs: N TAP queues, N packet sockets per slave sharing its "
        "frames by flow hash, one loop (or two, --threads 2) each (default %(default)s; "
        "more only pays with cores to spare: README, Performance)", metavar="N")
    busy_poll: int = _opt(
        0, "keep polling USEC microseconds after the last frame before sleeping: lower "
        "latency for CPU (default %(default)s: off)", metavar="USEC")
    gro: str = _opt(
        "on", "merge the consecutive TCP segments of a flow that the slaves hand over "
        "MTU-sized into one 64 KB frame before the master's stack sees them, as a "
        "NIC's GRO does (default %(default)s: it doubled TCP network->guest from a wire)",
        choices=("on", "off"))
    tap_io: str = _opt(
        "auto", "how the loop reads and writes the TAP: read()/write() per frame "
        "(syscalls), io_uring with multishot reads and batched writes (uring: Linux 6.7 "
        "or later), io_uring for the writes only (uring-write), or what measured fastest, "
        "uring-write, where the kernel allows it, else syscalls (auto, default)",
        choices=TAP_IO)
    updelay: int = _opt(
        0, "a slave that comes back must stay ready this long before it transmits again "
        "(default %(default)s, as net_failover)", metavar="MS")
    downdelay: int = _opt(
        5000, "keep the master's carrier this long when no slave can transmit, so a short "
        "gap (a migration's switch-over: a re-plugged VF trains its link for seconds; a "
        "link reset) does not flush the guest's neighbour tables; frames meanwhile are "
        "dropped and counted (default %(default)s; 0: carrier off at once, as "
        "net_failover)", metavar="MS")
    reselect: str = _opt(
        "always", "when a ready primary takes over again: always (default), if faster "
        "(better), or only when the active slave fails", choices=RESELECT)
    miimon: int = _opt(
        10, "the forwarding loop looks at each slave's carrier this often (default "
        "%(default)s; 0: only netlink events, which can lag by up to 1 s on real NICs)",
        metavar="MS")
    notify_count: int = _opt(
        1, "after each switch of the transmitting slave, and when the master comes up, "
        "announce it N times: gratuitous ARP, unsolicited NA, IGMP/MLD reports "
        "(default %(default)s, as bonding; 0: never, as net_failover)", metavar="N")
    notify_interval: int = _opt(200, "between announcements (default %(default)s)", metavar="MS")
    resend: bool = _opt(
        True, "drop a frame whose slave vanished mid-send instead of resending it on the "
        "other slave (net_failover's behaviour; for comparisons)", flag="--no-resend")
    arp_targets: tuple = _opt(
        (), "probe the path to IP with ARP (repeatable): a slave whose probes go "
        "unanswered counts as down even with carrier", metavar="IP", flag="--arp-target")
    ns_targets: tuple = _opt(
        (), "the same with IPv6 neighbour solicitations (repeatable)", metavar="IP6",
        flag="--ns-target")
    probe_interval: int = _opt(100, "between probe rounds (default %(default)s)", metavar="MS")
    probe_missed: int = _opt(
        3, "rounds without an answer before a path is down (default %(default)s)", metavar="N")
    metrics_listen: Optional[str] = _opt(
        None, "also serve the Prometheus metrics (netfo metrics) over HTTP at "
        "http://ADDR:PORT/metrics, in the master's network namespace: 127.0.0.1:PORT, "
        "[::1]:PORT, or :PORT for every address (default: off; no default port, and not "
        "node_exporter's 9100 if it runs too)", metavar="ADDR:PORT")

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)
        self._normalise()

    def problem(self) -> Optional[str]:
        """What is wrong with these values, in one line (None: nothing)."""
        for f in dataclasses.fields(self):
            choices = f.metadata["choices"]
            if choices and getattr(self, f.name) not in choices:
                return (f"{flag(f)} must be one of {', '.join(map(str, choices))}, "
                        f"not {getattr(self, f.name)!r}")
        if self.primary is not None:
            problem = ifname_problem(self.primary, "--primary")
            if problem:
                return problem
        for name, top, unit in (("queues", MAX_QUEUES, ""),
                                ("busy_poll", MAX_BUSY_POLL_US, " us"),
                                ("updelay", MAX_MS, " ms"), ("downdelay", MAX_MS, " ms"),
                                ("miimon", MAX_MS, " ms"), ("notify_count", MAX_COUNT, ""),
                                ("notify_interval", MAX_MS, " ms"),
                                ("probe_interval", MAX_MS, " ms"),
                                ("probe_missed", MAX_COUNT, "")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                return f"{flag(FIELDS[name])} must be a whole number, not {value!r}"
            if value < 0:
                return f"{flag(FIELDS[name])} cannot be negative"
            if value > top:
                return f"{flag(FIELDS[name])} must be at most {top:,}{unit}, not {value:,}"
        if self.queues < 1:
            return "--queues must be at least 1"
        if self.probe_interval <= 0:
            return "--probe-interval must be more than 0 ms"
        if self.probe_missed < 1:
            return "--probe-missed must be at least 1"
        if self.metrics_listen is not None:
            from .exporter import parse_listen
            if not isinstance(self.metrics_listen, str):
                return f"--metrics-listen must be ADDR:PORT, not {self.metrics_listen!r}"
            try:
                parse_listen(self.metrics_listen)
            except ValueError as e:
                return str(e)
        for name, kind in (("arp_targets", ipaddress.IPv4Address),
                           ("ns_targets", ipaddress.IPv6Address)):
            for t in getattr(self, name):
                try:
                    kind(t)
                except ValueError:
                    return f"{flag(FIELDS[name])} {t!r} is not an {kind.__name__[:4]} address"
        return None

    def _normalise(self) -> None:
        """Targets as the prober compares them with what it hears (fd00::1, not fd00::0001)."""
        object.__setattr__(self, "arp_targets",
                           tuple(str(ipaddress.IPv4Address(t)) for t in self.arp_targets))
        object.__setattr__(self, "ns_targets",
                           tuple(str(ipaddress.IPv6Address(t)) for t in self.ns_targets))

    # -- views for the parts of the daemon ---------------------------------

    def policy(self):
        from .group import Policy
        return Policy(self.updelay / 1000, self.downdelay / 1000, self.reselect)

    @property
    def miimon_s(self) -> float:
        return self.miimon / 1000

    @property
    def notify_interval_s(self) -> float:
        return self.notify_interval / 1000

    @property
    def probe_interval_s(self) -> float:
        return self.probe_interval / 1000

    def argv(self) -> list:
        """The `netfo up` options that give this Config (for the detached daemon)."""
        out = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" or isinstance(f.default, bool):
                if value != f.default:
                    out.append(flag(f))
            elif isinstance(f.default, tuple):
                for v in value:
                    out += [flag(f), str(v)]
            elif value is not None:
                out += [flag(f), str(value)]
        return out


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def flag(f: dataclasses.Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def add_arguments(parser) -> None:
    """The `netfo up` options, from Config's fields: one default, one help text."""
    for f in dataclasses.fields(Config):
        m = f.metadata
        if isinstance(f.default, bool):            # a flag that turns a default off
            parser.add_argument(flag(f), dest=f.name, action="store_false", help=m["help"])
        elif isinstance(f.default, tuple):
            parser.add_argument(flag(f), dest=f.name, action="append", default=[],
                                metavar=m["metavar"], help=m["help"])
        else:
            kind = type(f.default) if f.default is not None else str
            parser.add_argument(flag(f), dest=f.name, type=kind, default=f.default,
                                choices=m["choices"], metavar=m["metavar"], help=m["help"])


def from_args(args) -> Config:
    """The Config of parsed `netfo up` arguments (ValueError: a bad value)."""
    values = {}
    for f in dataclasses.fields(Config):
        v = getattr(args, f.name)
        values[f.name] = tuple(v) if isinstance(f.default, tuple) else v
    return Config(**values)
