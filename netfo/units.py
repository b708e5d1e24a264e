"""`netfo systemd install`: the unit files shipped in the package
(netfo/systemd/*.service), with the absolute path of this netfo in place
of @NETFO@, written where systemd finds them."""
from __future__ import annotations

import os
import shlex
import sys
from importlib import resources
from typing import Optional

UNITS = ("netfo@.service", "netfo-auto.service")
PLACEHOLDER = "@NETFO@"
DEFAULT_PREFIX = "/etc/systemd/system"


def template(name: str) -> str:
    return resources.files("netfo").joinpath("systemd", name).read_text()


def netfo_command(argv0: Optional[str] = None, executable: Optional[str] = None) -> str:
    """How systemd should run this netfo: the console script of this
    installation (next to the interpreter, e.g. a venv's bin/netfo, or the
    absolute sys.argv[0]), else this interpreter with -m netfo."""
    executable = executable or sys.executable
    argv0 = sys.argv[0] if argv0 is None else argv0
    beside = os.path.join(os.path.dirname(executable), "netfo")
    for candidate in (beside, argv0):
        if candidate and os.path.basename(candidate) == "netfo" and os.path.isabs(candidate) \
                and os.access(candidate, os.X_OK) and os.path.isfile(candidate):
            return candidate
    return " ".join(shlex.quote(a) for a in (os.path.abspath(executable), "-I", "-m", "netfo"))


def render(name: str, command: Optional[str] = None) -> str:
    return template(name).replace(PLACEHOLDER, command or netfo_command())


def install(prefix: str = DEFAULT_PREFIX, command: Optional[str] = None) -> list:
    """Write every unit into prefix; the paths written."""
    os.makedirs(prefix, exist_ok=True)
    written = []
    for name in UNITS:
        path = os.path.join(prefix, name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(render(name, command))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        written.append(path)
    return written


def cmd_systemd(args) -> int:
    """netfo systemd install [--prefix DIR] [--print UNIT]"""
    if args.action == "print":
        sys.stdout.write(render(args.unit))
        return 0
    for path in install(args.prefix):
        print(f"netfo: wrote {path}")
    reload = "systemctl daemon-reload" if args.prefix == DEFAULT_PREFIX else \
        f"systemctl daemon-reload  # if {args.prefix} is a unit directory systemd reads"
    print("then, for one master (the paravirtual NIC's name, e.g. ens10):")
    print(f"  {reload}")
    print("  systemctl enable --now netfo@ens10.service")
    print("or, for every NIC /etc/netfo/netfo.conf lists (see `netfo auto --help`):")
    print("  systemctl enable --now netfo-auto.service")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("systemd", help="install the systemd units (netfo@IF.service, "
                       "netfo-auto.service)")
    p.add_argument("action", choices=("install", "print"),
                   help="install: write the units; print: show one on stdout")
    p.add_argument("unit", nargs="?", default="netfo@.service", choices=UNITS,
                   help="the unit `print` shows (default netfo@.service)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX,
                   help=f"where to write the units (default {DEFAULT_PREFIX})")
    p.set_defaults(fn=cmd_systemd)
