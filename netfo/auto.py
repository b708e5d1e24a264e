"""`netfo auto`: make failover masters by themselves, as the kernel's
net_failover does for a virtio NIC with the STANDBY feature.

A small daemon reads its configuration (default /etc/netfo/netfo.conf),
follows link events, and whenever a configured standby candidate and a
same-MAC partner (the VF) both exist and no netfo serves the candidate yet,
starts `netfo up IF` for it: each master gets a daemon of its own
(netfo.spawn, detached), so stopping or restarting `netfo auto` leaves the
masters running.  Of netfo's own links (a master is a TAP, a standby is
renamed IF+"nsby") it only ever acts on a configured master whose daemon
died: `netfo up` then adopts it.

The configuration file (INI):

    [auto]
    # NICs to make masters of, by name ...
    interfaces = ens10 ens12
    # ... and/or by driver: "virtio" is any NIC bound to virtio_net;
    # "driver:NAME" any NIC bound to driver NAME
    match = virtio
    # `netfo up` options for every master (netfo up --help)
    options = --notify-count 3
    # how masters are started: "spawn" (a detached netfo daemon each; the
    # default) or "systemd" (systemctl start netfo@IF.service; options are
    # then the unit's business: systemctl edit netfo@IF)
    start = spawn

    # options for one NIC, instead of [auto]'s
    [ens12]
    options = --primary ens13 --rx-policy kernel
"""
from __future__ import annotations

import configparser
import logging
import os
import selectors
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from . import control, sdnotify, spawn
from .errors import NetfoError

log = logging.getLogger("netfo")

DEFAULT_CONFIG = "/etc/netfo/netfo.conf"
STANDBY_SUFFIX = "nsby"
RETRY_S = 10.0          # after a failed `netfo up`, before trying that NIC again
TICK_S = 1.0            # rescan at least this often (a lost event, a retry due)
ALIASES = {"virtio": "virtio_net"}
# What a child must not inherit from the service manager: it is not the
# service's main process (netfo@IF.service is how a master talks to systemd).
NOT_INHERITED = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS",
                 "LISTEN_PID", "LISTEN_FDNAMES")


@dataclass
class AutoConfig:
    interfaces: List[str] = field(default_factory=list)
    drivers: List[str] = field(default_factory=list)     # driver names to match
    options: List[str] = field(default_factory=list)
    per_if: Dict[str, List[str]] = field(default_factory=dict)
    start: str = "spawn"

    def options_for(self, ifname: str) -> List[str]:
        return self.per_if.get(ifname, self.options)


def parse(text: str, source: str = "netfo.conf") -> AutoConfig:
    """The configuration, or NetfoError naming what is wrong."""
    cp = configparser.ConfigParser(inline_comment_prefixes=("#", ";"), interpolation=None)
    try:
        cp.read_string(text, source=source)
    except configparser.Error as e:
        raise NetfoError(f"{source}: {e}".replace("\n", " ")) from None
    if not cp.has_section("auto"):
        raise NetfoError(f"{source}: no [auto] section")
    sec = cp["auto"]
    unknown = set(sec) - {"interfaces", "match", "options", "start"}
    if unknown:
        raise NetfoError(f"{source}: [auto]: unknown setting {', '.join(sorted(unknown))}")
    cfg = AutoConfig(interfaces=sec.get("interfaces", "").split(),
                     options=_split(sec.get("options", ""), source, "auto"),
                     start=sec.get("start", "spawn").strip())
    for token in sec.get("match", "").split():
        if token in ALIASES:
            cfg.drivers.append(ALIASES[token])
        elif token.startswith("driver:") and len(token) > len("driver:"):
            cfg.drivers.append(token[len("driver:"):])
        else:
            raise NetfoError(f"{source}: [auto] match: {token!r} is not virtio or driver:NAME")
    if cfg.start not in ("spawn", "systemd"):
        raise NetfoError(f"{source}: [auto] start must be spawn or systemd, not {cfg.start!r}")
    if not cfg.interfaces and not cfg.drivers:
        raise NetfoError(f"{source}: [auto] names no interfaces and matches no driver")
    for name in cp.sections():
        if name == "auto":
            continue
        extra = set(cp[name]) - {"options"}
        if extra:
            raise NetfoError(f"{source}: [{name}]: unknown setting {', '.join(sorted(extra))}")
        cfg.per_if[name] = _split(cp[name].get("options", ""), source, name)
    for ifname in set(cfg.interfaces) | set(cfg.per_if):
        _check_options(ifname, cfg.options_for(ifname), source)
    return cfg


def _split(value: str, source: str, section: str) -> List[str]:
    try:
        return shlex.split(value)
    except ValueError as e:
        raise NetfoError(f"{source}: [{section}] options: {e}") from None


def _check_options(ifname: str, options: List[str], source: str) -> None:
    """The options as `netfo up` would take them (one clear line, before any start)."""
    from .cli import config_of, parser
    try:
        args = parser().parse_args(["up", ifname, *options])
        config_of(args)
    except SystemExit:
        raise NetfoError(f"{source}: bad `netfo up` options for {ifname}: "
                         f"{' '.join(options)}") from None
    except ValueError as e:
        raise NetfoError(f"{source}: {ifname}: {e}") from None


def load(path: str) -> AutoConfig:
    try:
        with open(path) as f:
            return parse(f.read(), path)
    except OSError as e:
        raise NetfoError(f"cannot read {path}: {e.strerror}") from None


# ----------------------------------------------------------------- the links

def driver(ifname: str, sysfs: str = "/sys/class/net") -> Optional[str]:
    """The driver bound to ifname's device (virtio_net, ...), None for a
    virtual link."""
    try:
        return os.path.basename(os.readlink(os.path.join(sysfs, ifname, "device", "driver")))
    except OSError:
        return None


def _journalled(ifname: str) -> bool:
    from . import journal
    return journal.load(ifname) is not None


def candidates(links: list, cfg: AutoConfig, driver_of: Callable[[str], Optional[str]] = driver,
               running: Callable[[str], bool] = control.running,
               journalled: Callable[[str], bool] = _journalled) -> List[str]:
    """Names to start `netfo up` for now: a configured master whose daemon
    died (a TAP with a journal: `up` adopts it), and the standby candidates
    named or matched, not netfo's own (a TAP master, a renamed *nsby
    standby), with a same-MAC partner, no renamed standby of their own yet,
    and no netfo serving them."""
    names = {l.name for l in links}
    out = []
    for l in links:
        if l.kind == "tun":
            sby = (l.name + STANDBY_SUFFIX)[:15]
            if ((l.name in cfg.interfaces or (cfg.drivers and driver_of(sby) in cfg.drivers))
                    and sby in names and not running(l.name) and journalled(l.name)):
                out.append(l.name)
            continue
        if l.name.endswith(STANDBY_SUFFIX) or l.arptype != 1:
            continue
        if l.name not in cfg.interfaces and not (cfg.drivers and driver_of(l.name) in cfg.drivers):
            continue
        mac = l.identity_mac
        if not mac or mac == "00:00:00:00:00:00":
            continue
        partner = [p for p in links if p.index != l.index and p.kind != "tun"
                   and not p.name.endswith(STANDBY_SUFFIX) and p.identity_mac == mac]
        if not partner:
            continue
        if (l.name + STANDBY_SUFFIX)[:15] in names or running(l.name):
            continue
        out.append(l.name)
    return out


# ----------------------------------------------------------------- the daemon

class Auto:
    def __init__(self, cfg: AutoConfig, config_path: str = DEFAULT_CONFIG):
        self.cfg, self.config_path = cfg, config_path
        self.children: Dict[str, subprocess.Popen] = {}     # `netfo up` still starting
        self.failed: Dict[str, float] = {}                  # monotonic time of the last failure
        self.said: Dict[str, str] = {}                      # last error logged per NIC
        self.started: List[str] = []
        self.stop = False

    def env(self) -> dict:
        return {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}

    def start(self, ifname: str) -> None:
        if self.cfg.start == "systemd":
            argv = ["systemctl", "start", "--no-block", f"netfo@{ifname}.service"]
            if self.cfg.options_for(ifname):
                log.warning("%s: start = systemd: options are ignored (systemctl edit "
                            "netfo@%s.service)", ifname, ifname)
        else:
            argv = spawn.netfo("up", ifname, *self.cfg.options_for(ifname))
        log.info("%s: standby and same-MAC partner present: %s", ifname, " ".join(argv))
        self.children[ifname] = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, cwd=spawn.NEUTRAL_CWD, start_new_session=True, env=self.env())

    def reap(self) -> None:
        for ifname, p in list(self.children.items()):
            if p.poll() is None:
                continue
            del self.children[ifname]
            out = (p.stdout.read() if p.stdout else "").strip().replace("\n", " | ")
            if p.stdout:
                p.stdout.close()
            if p.returncode == 0:
                log.info("%s: started (%s)", ifname, out or "ok")
                self.started.append(ifname)
                self.failed.pop(ifname, None)
                self.said.pop(ifname, None)
            else:
                self.failed[ifname] = time.monotonic()
                if self.said.get(ifname) != out:
                    log.error("%s: netfo up failed (exit %d): %s; retrying every %.0f s",
                              ifname, p.returncode, out, RETRY_S)
                    self.said[ifname] = out

    def scan(self, ipr) -> None:
        from pyroute2.netlink.exceptions import NetlinkError
        from .kernel import links
        self.reap()
        try:
            found = candidates(links.dump(ipr), self.cfg)
        except (OSError, NetlinkError) as e:
            # a service that outlives its masters must not die of one read
            log.warning("reading the links failed (%s): again within %.0f s", e, TICK_S)
            return
        now = time.monotonic()
        for ifname in found:
            if ifname in self.children or now - self.failed.get(ifname, -RETRY_S) < RETRY_S:
                continue
            self.start(ifname)

    def status(self) -> str:
        masters = [n for n in control.list_daemons()]
        return (f"masters: {', '.join(masters) or 'none'}"
                + (f"; starting: {', '.join(self.children)}" if self.children else ""))

    def run(self) -> None:
        from pyroute2 import IPRoute
        from .kernel import links
        sock = links.link_socket(blocking=False)
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        sel.register(wake_r, selectors.EVENT_READ)

        def on_signal(*_):
            self.stop = True
            try:
                os.write(wake_w, b"!")
            except OSError:
                pass
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        watchdog = sdnotify.watchdog_interval()
        next_ping = 0.0
        last_status = None
        with IPRoute() as ipr:
            self.scan(ipr)
            sdnotify.ready(self.status())
            log.info("following link events for %s", self.describe())
            while not self.stop:
                events = sel.select(min(TICK_S, watchdog or TICK_S))
                for key, _ in events:
                    if key.fileobj is sock:
                        try:
                            while sock.recv(1 << 16):
                                pass
                        except (BlockingIOError, InterruptedError):
                            pass
                        except OSError:         # ENOBUFS: events lost; the scan reads all
                            pass
                    else:
                        os.read(wake_r, 64)
                if self.stop:
                    break
                self.scan(ipr)
                st = self.status()
                if st != last_status:
                    sdnotify.status(st)
                    last_status = st
                if watchdog and time.monotonic() >= next_ping:
                    sdnotify.watchdog()
                    next_ping = time.monotonic() + watchdog
        sdnotify.stopping()
        for ifname, p in self.children.items():     # let them finish: they are independent
            log.info("%s: leaving netfo up (pid %d) to finish by itself", ifname, p.pid)
        sel.close()
        sock.close()
        os.close(wake_r), os.close(wake_w)

    def describe(self) -> str:
        parts = []
        if self.cfg.interfaces:
            parts.append(" ".join(self.cfg.interfaces))
        if self.cfg.drivers:
            parts.append("NICs of driver " + "/".join(self.cfg.drivers))
        return " and ".join(parts)


def cmd_auto(args) -> int:
    from . import logs
    logs.setup("auto")
    try:
        cfg = load(args.config)
    except NetfoError as e:
        log.error("%s", e)
        return 1
    Auto(cfg, args.config).run()
    log.info("stopped; the masters it started keep running (netfo status)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("auto", help="make a master for every configured NIC as soon as it "
                       "and a same-MAC VF exist (a daemon; see netfo-auto.service)",
                       description=__doc__.split("\n\n", 1)[1],
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help=f"the configuration file (default {DEFAULT_CONFIG})")
    p.set_defaults(fn=cmd_auto)
