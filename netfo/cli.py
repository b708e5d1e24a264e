"""Command line: netfo up / down / status / lab."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional

from . import __version__, control, spawn
from .config import Config, add_arguments, from_args, ifname_problem
from .errors import NetfoError, already_running, no_interface

# Only what parsing the command line and `netfo up`'s client need is
# imported above: logging, subprocess, the daemon's modules and pyroute2
# are imported by the commands that use them.  Where Python starts slowly
# (a guest with its root on 9p: issue 14) each module is felt.

def _setup_logging(ifname: str, log_file: Optional[str] = None) -> None:
    from . import logs                  # journald priorities under systemd (logs.py)
    logs.setup(ifname, log_file=log_file)


# ---------------------------------------------------------------- up

def config_of(args) -> Config:
    """The daemon's Config from `netfo up` arguments (ValueError: a bad value)."""
    return from_args(args)


def cmd_up(args) -> int:
    import logging
    import signal
    try:
        config = config_of(args)
    except ValueError as e:             # one clear line, before anything is spawned
        print(f"netfo: {e}", file=sys.stderr)
        return 2
    if not args.foreground:
        try:
            _precheck(args.ifname)
        except NetfoError as e:
            print(f"netfo: {e}", file=sys.stderr)
            return 1
        return _spawn_daemon(args, config)
    _setup_logging(args.ifname, args.log_file)
    ready_fd = args.ready_fd
    try:
        from .daemon import Daemon     # needs pyroute2 + the extension: only here
    except NetfoError as e:
        _tell(ready_fd, f"error: {e}")
        print(f"netfo: {e}", file=sys.stderr)
        return 1
    d = Daemon(args.ifname, config, takeover=args.takeover)
    for sig in (signal.SIGTERM, signal.SIGINT):     # during up: unwind, as down would
        signal.signal(sig, _terminated)
    try:
        d.up()
    except NetfoError as e:
        _tell(ready_fd, f"error: {e}")
        print(f"netfo: {e}", file=sys.stderr)
        return 1
    except Exception as e:        # a bug, but still: nothing left half-done
        _tell(ready_fd, f"error: {type(e).__name__}: {e}")
        logging.exception("up failed")
        return 1
    try:
        d.serve(ready=lambda: _tell(ready_fd, "\n".join(["ok", *d.builder.notes])))
    finally:
        restored = _down(d, args.ifname)
    if not restored:
        return 1
    if d.loop_error is not None:        # the datapath died: say so to systemd & co
        logging.error("%s: exiting after the datapath failed: %s", args.ifname, d.loop_error)
        return 1
    return 0


def _precheck(ifname: str) -> None:
    """The daemon's first refusals, told before it is started: a daemon
    costs a Python start and its imports (seconds in a slow guest).  With
    a journal here (a daemon died), the daemon decides: it may adopt or
    restore what the journal names; a name too long for its standby's is
    the daemon's to explain."""
    import socket
    if control.running(ifname):
        raise already_running(ifname)
    if os.path.exists(control.run_path(ifname, "journal")) or len(ifname.encode()) > 11:
        return
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        raise no_interface(ifname) from None


def _down(d, ifname: str) -> bool:
    """The daemon's down; False if a restore step failed (logged in one
    line; the journal keeps what is left for the next `netfo down`)."""
    import logging
    try:
        d.down()
    except NetfoError as e:
        logging.error("%s", e)
        return False
    logging.info("%s: %s", ifname, "handed over" if d.handed_over else "down, machine restored")
    return True


def _terminated(signum, frame) -> None:
    """SIGTERM/SIGINT while up() runs: leave it through its unwind (serve()
    installs its own handler once the master is up).  A second signal
    waits: the unwind must finish."""
    import signal
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def _tell(fd: Optional[int], line: str) -> None:
    if fd is not None:
        try:
            os.write(fd, (line + "\n").encode())
            os.close(fd)
        except OSError:
            pass


def _spawn_daemon(args, config: Config, takeover: bool = False) -> int:
    """Run `up --foreground` detached; return when the master is ready."""
    import subprocess
    rd, wr = os.pipe()
    path = control.run_path(args.ifname, "log")
    argv = spawn.netfo("up", args.ifname, "--foreground", *config.argv(), "--ready-fd", str(wr),
                       "--log-file", path, *(["--takeover"] if takeover else []))
    fresh = not os.path.exists(path)
    with open(path, "a") as logf:
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                         pass_fds=(wr,), start_new_session=True, cwd=spawn.NEUTRAL_CWD)
    os.close(wr)
    with os.fdopen(rd) as f:
        line = f.readline().strip()
        rest = f.readlines() if line == "ok" else []
    if line == "ok":
        print(f"netfo: {args.ifname} is {'restarted' if takeover else 'up'} (daemon log: {path})")
        for note in rest:           # what the operator has to do now (a DHCP client)
            print(f"netfo: note: {note.strip()}")
        return 0
    if line.startswith("error: "):
        msg = line[len("error: "):]
        if fresh:                   # a failed up leaves nothing behind
            os.unlink(path)
    else:
        msg = f"daemon failed, see {path}"
    print(f"netfo: {msg}", file=sys.stderr)
    return 1


# ---------------------------------------------------------------- restart

def cmd_restart(args) -> int:
    """A new daemon (this netfo's code) takes the master over from the
    running one: same master, same options, no carrier drop (handover.py)."""
    st = _ask(args.ifname, "status")
    sub = argparse.ArgumentParser(add_help=False)
    add_arguments(sub)
    old = sub.parse_args(st.get("argv", []))
    if args.queues is not None:         # the one option a restart may change (handover.py)
        old.queues = args.queues
    try:
        config = from_args(old)
    except ValueError as e:             # one clear line; the running daemon serves on
        print(f"netfo: {e}", file=sys.stderr)
        return 2
    return _spawn_daemon(args, config, takeover=True)


# ---------------------------------------------------------------- down

def _errors_summed_up() -> None:
    """Restoring here: its warnings are for the user, one line each; its
    errors are summed up in the one line that says what is left to do."""
    import logging
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("netfo: %(message)s"))
    h.addFilter(lambda r: r.levelno < logging.ERROR)
    logging.getLogger("netfo").addHandler(h)


def cmd_down(args) -> int:
    reply = control.request(args.ifname, "down", timeout=60)
    if reply is None:
        from . import journal
        _errors_summed_up()
        if journal.recover(args.ifname):
            print(f"netfo: the daemon for {args.ifname} had died; restored from its journal")
            return 0
        print(f"netfo: netfo is not running on {args.ifname} in this network namespace",
              file=sys.stderr)
        return 1
    if "error" in reply:
        print(f"netfo: {reply['error']}", file=sys.stderr)
        return 1
    # The daemon exits once it has replied; wait so that `down` returning
    # means its control socket is gone too.
    for _ in range(100):
        if not control.running(args.ifname):
            break
        time.sleep(0.05)
    print(f"netfo: {args.ifname} is down, restored")
    return 0


# ---------------------------------------------------------------- status

def dumps(obj, args) -> str:
    """JSON as iproute2 prints it: compact, indented with -p/--pretty."""
    return json.dumps(obj, indent=2) if args.pretty else json.dumps(obj, separators=(",", ":"))


def cmd_status(args) -> int:
    from . import details, health
    if getattr(args, "check", False):
        return _check(args)
    names = [args.ifname] if args.ifname else control.list_daemons()
    result = []
    for name in names:
        st = control.request(name, "status")
        if st is None:
            print(f"netfo: netfo is not running on {name} in this network namespace",
                  file=sys.stderr)
            return 1
        result.append(st)
    if args.json:
        print(dumps(result[0] if args.ifname else result, args))
    elif not result:
        print("netfo: no failover master in this network namespace")
    else:
        show = (lambda st: format_status(st) + "\n" + details.render(st)) if args.details \
            else format_status
        print("\n\n".join(show(st) for st in result))
    if not args.json and not all(health.transmits(st) for st in result):
        return 1                        # no slave can transmit (--json: see "active")
    return 0


def _check(args) -> int:
    """netfo status IF --check: one line; 0 OK, 1 degraded, 2 down (netfo/health.py)."""
    from . import health
    if not args.ifname:
        print("netfo: status --check needs the master's name", file=sys.stderr)
        return health.DOWN
    code, line = health.check(args.ifname, control.request(args.ifname, "status"))
    print(line)
    return code


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def format_status(st: dict) -> str:
    m = st["master"]
    s = m["stats"]
    lines = [f"{m['name']}: carrier {'on' if m['carrier'] else 'off'}, mtu {m['mtu']}, "
             f"mac {m['mac']}, rx-policy {st['rx_policy']}",
             f"  transmitting via: {st['active'] or 'none (frames dropped)'}"]
    for sl in st["slaves"]:
        c = sl["stats"]
        link = ("up" if sl["admin_up"] else "down") + (", carrier" if sl["carrier"] else ", no carrier")
        mark = "*" if sl["transmitting"] else " "
        lines.append(f" {mark}{sl['role']:8} {sl['name']:15} {link:18} "
                     f"rx {c['rx_packets']} pkts/{_human(c['rx_bytes'])}  "
                     f"tx {c['tx_packets']} pkts/{_human(c['tx_bytes'])}  "
                     f"dropped rx {c['rx_dropped']} tx {c['tx_dropped']}")
    lines.append(f"  master: rx {s['rx_packets']} pkts/{_human(s['rx_bytes'])}  "
                 f"tx {s['tx_packets']} pkts/{_human(s['tx_bytes'])}  "
                 f"dropped rx {s['rx_dropped']} tx {s['tx_dropped']}")
    if len(st.get("queues", [])) > 1:       # --queues: each queue's share of the master's
        lines.append("  queues: " + ", ".join(f"{i}: rx {q['rx_packets']} tx {q['tx_packets']}"
                                              for i, q in enumerate(st["queues"])) + " pkts")
    if s.get("rx_coalesced"):
        lines.append(f"  gro: {s['rx_coalesced']} rx segments merged into an earlier frame")
    drops = ", ".join(f"{k} {v}" for k, v in st["drops"].items() if v)
    if drops:
        lines.append(f"  drops: {drops}")
    if st.get("forced"):
        lines.append(f"  forced: {st['forced']} (netfo set {m['name']} active auto releases it)")
    for e in st.get("events", []):
        lines.append(f"  event: {format_event(e)}")
    last = st["last_failover"]
    when = (f" (last {time.strftime('%H:%M:%S', time.localtime(last))}, "
            f"{time.time() - last:.1f} s ago)") if last else ""
    lines.append(f"  failovers: {st['failovers']}{when}")
    sil = st.get("silence") or {}
    if sil.get("reinstalls"):
        lines.append(f"  silencing re-installed: {sil['reinstalls']} "
                     f"(last {time.strftime('%H:%M:%S', time.localtime(sil['last']))}; "
                     f"a firewall or sysctl reload had removed it)")
    return "\n".join(lines)


# ---------------------------------------------------------------- metrics

def cmd_metrics(args) -> int:
    """The Prometheus text format: IFNAME's, or every master's in this netns."""
    from . import metrics
    if args.ifname:
        statuses = [_ask(args.ifname, "status")]
    else:
        statuses = []
        for name in control.list_daemons():
            st = control.request(name, "status")
            if st is not None and "error" not in st:     # gone meanwhile: not a master now
                statuses.append(st)
    sys.stdout.write(metrics.render(statuses))
    return 0


# ---------------------------------------------------------------- set, events

def _ask(ifname: str, cmd: str, **args) -> dict:
    reply = control.request(ifname, cmd, **args)
    if reply is None:
        raise NetfoError(f"netfo is not running on {ifname} in this network namespace")
    if "error" in reply:
        raise NetfoError(reply["error"])
    return reply


def cmd_set(args) -> int:
    reply = _ask(args.ifname, "set", active=args.value)
    print(f"netfo: {args.ifname}: active {args.value}; transmitting via {reply['active']}")
    return 0


def _clock(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall * 1000) % 1000:03d}"


def format_event(e: dict) -> str:
    """One event for people (netfo/events.py has the schema)."""
    from . import events
    return f"{_clock(e['time'])}  {events.describe(e)}"


def cmd_events(args) -> int:
    """The ring (its last 1000 events); with --follow, then each new event
    as the daemon pushes it, until the master goes down (control.follow)."""
    show = (lambda e: json.dumps(e)) if args.json else format_event
    stream = control.follow(args.ifname) if args.follow else \
        _ask(args.ifname, "events")["events"]
    try:
        for e in stream:
            print(show(e), flush=True)
    except BrokenPipeError:                 # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


# ---------------------------------------------------------------- main

class Parser(argparse.ArgumentParser):
    """A bad argument is one line and exit 2 (argparse's usage block is for --help)."""

    def error(self, message: str):
        self.exit(2, f"netfo: {self.prog.split(' ', 1)[-1]}: {message}\n"
                     if " " in self.prog else f"netfo: {message}\n")


# The commands that name a master: its name is checked as the kernel would.
NAMED = ("up", "down", "status", "set", "events", "restart", "metrics")


def output_options(p, default, pretty: bool = True, details: bool = False,
                   what: str = "machine-readable JSON (see README), compact") -> None:
    """iproute2's -j/-p/-d, before the command (netfo -j status) or after it
    (netfo status -j).  After it they default to SUPPRESS: a command's own
    default must not undo the global option."""
    p.add_argument("-j", "--json", action="store_true", default=default, help=what)
    if pretty:
        p.add_argument("-p", "--pretty", action="store_true", default=default,
                       help="indent the JSON (no effect without -j)")
    if details:
        p.add_argument("-d", "--details", action="store_true", default=default,
                       help="status: also what /proc/net/bonding shows of a bond "
                            "(policy, probing; per slave: speed, duplex, link failures, "
                            "permanent MAC)")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="netfo", description=(
        "Userspace net_failover: one master interface over a VF (primary) and a "
        "paravirtual NIC (standby) with the same MAC."))
    p.add_argument("-V", "--version", action="version", version=f"netfo {__version__}",
                   help="print netfo's version and exit")
    output_options(p, False, details=True)
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="make IFNAME a failover master")
    up.add_argument("ifname", help="the paravirtual NIC (becomes IFNAME+nsby)")
    up.add_argument("--foreground", action="store_true", help="stay attached (systemd, tests)")
    add_arguments(up)
    up.add_argument("--takeover", action="store_true",
                    help="take the master over from its running daemon without a flap "
                         "(what netfo restart does)")
    up.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    up.add_argument("--log-file", help=argparse.SUPPRESS)     # the detached daemon's, capped
    up.set_defaults(fn=cmd_up)

    rs = sub.add_parser("restart", help="replace the running daemon (e.g. after an upgrade) "
                                        "keeping the master: no flap, no address change")
    rs.add_argument("ifname")
    rs.add_argument("--queues", type=int, metavar="N",
                    help="the new daemon's datapath queues (default: the running daemon's)")
    rs.set_defaults(fn=cmd_restart)

    down = sub.add_parser("down", help="stop and restore the machine as before up")
    down.add_argument("ifname")
    down.set_defaults(fn=cmd_down)

    st = sub.add_parser("status", help="show masters, slaves, counters")
    st.add_argument("ifname", nargs="?", help="the master (default: every master)")
    output_options(st, argparse.SUPPRESS, details=True)
    st.add_argument("--check", action="store_true", help="one line for monitoring; exit 0 "
                    "OK (primary transmits), 1 degraded (standby), 2 down (nothing, or no daemon)")
    st.set_defaults(fn=cmd_status)

    st = sub.add_parser("set", help="force the transmitting slave (drain the VF), or auto")
    st.add_argument("ifname")
    st.add_argument("what", choices=("active",))
    st.add_argument("value", choices=("primary", "standby", "auto"))
    st.set_defaults(fn=cmd_set)

    ev = sub.add_parser("events", help="what happened to the master: switches (with reasons), "
                        "carrier, slaves enslaved and released, MTU, MAC, paths")
    ev.add_argument("ifname")
    ev.add_argument("--follow", "-f", action="store_true", help="then print each new event as "
                    "the daemon pushes it, until the master goes down (follows a netfo restart)")
    output_options(ev, argparse.SUPPRESS, pretty=False,
                   what="one JSON object per line (compact, whatever -p says)")
    ev.set_defaults(fn=cmd_events)

    mt = sub.add_parser("metrics", help="Prometheus metrics in the text format (for "
                        "node_exporter's textfile collector)")
    mt.add_argument("ifname", nargs="?", help="the master (default: every master)")
    mt.set_defaults(fn=cmd_metrics)

    from . import auto, units
    auto.add_parser(sub)                # netfo auto [--config PATH]
    units.add_parser(sub)               # netfo systemd install

    from .lab import cli as labcli
    labcli.add_parser(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.cmd in NAMED and getattr(args, "ifname", None) is not None:
        problem = ifname_problem(args.ifname)
        if problem:                     # one line, before anything is asked or changed
            print(f"netfo: {problem}", file=sys.stderr)
            return 2
    try:
        return args.fn(args)
    except NetfoError as e:
        print(f"netfo: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (netfo metrics | head): quietly, as cat does;
        # stdout to /dev/null so that the exit's flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
