"""The journal of what `up` changed, and putting it back.

The daemon keeps the journal in /run/netfo as it changes things, so that
`netfo down` can restore the machine from it even after the daemon died
(kill -9, crash, OOM): the master is a persistent TAP and would otherwise
stay behind with the standby renamed.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import struct
from typing import Optional

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from . import control
from .errors import NetfoError
from .kernel import links
from .kernel.silence import Silencer

log = logging.getLogger("netfo")


VERSION = 2
SO_NETNS_COOKIE = 71        # Linux >= 5.14; not in Python's socket module


def path(ifname: str) -> str:
    return control.run_path(ifname, "journal")


def netns_id() -> str:
    """This network namespace, as the kernel never reuses it: its cookie
    (the nsfs inode, which the journal's file name uses, is reused once a
    namespace is gone)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            return "cookie:%d" % struct.unpack("Q", s.getsockopt(socket.SOL_SOCKET,
                                                                  SO_NETNS_COOKIE, 8))[0]
        except OSError:
            return "inode:%d" % os.stat("/proc/self/ns/net").st_ino


def new(ifname: str) -> dict:
    """A fresh journal; its id also marks the master (the TAP's ifalias)."""
    return {"version": VERSION, "id": secrets.token_hex(8), "netns": netns_id(),
            "ifname": ifname, "pid": os.getpid(), "moved": False, "slaves": {},
            "master": None}


def mark(j: dict) -> str:
    """The ifalias that says a TAP is this journal's master."""
    return f"netfo:{j['id']}"


def save(journal: dict) -> None:
    tmp = path(journal["ifname"]) + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(journal, f)
    os.replace(tmp, path(journal["ifname"]))


def load(ifname: str) -> Optional[dict]:
    try:
        with open(path(ifname)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def forget(ifname: str) -> None:
    try:
        os.unlink(path(ifname))
    except FileNotFoundError:
        pass


def restore_slave(ipr: IPRoute, index: int, entry: dict, gone: bool = False) -> None:
    """Undo what enslaving did to one link (sysctl, nft chain, MTU, admin)."""
    Silencer(entry["master"]).unsilence(entry["name"], None if gone else entry["disable_ipv6"],
                                              chain=entry["silenced_as"])
    if gone:
        return
    link = links.get(ipr, index=index)
    if link is None:
        return
    if link.mtu != entry["mtu"]:
        links.set_link(ipr, index, f"restore {link.name} MTU", mtu=entry["mtu"])
    links.restore_max_sizes(ipr, index, link.name, entry.get("max_sizes"))
    if not entry["was_up"] and link.up:
        links.set_link(ipr, index, f"set {link.name} down again", state="down")


def restore(ipr: IPRoute, journal: dict) -> None:
    """Put the machine back as the journal says it was before up.

    What goes back onto the standby is what the master has now (the user may
    have changed it since up), once addresses were moved; else the snapshot.
    """
    sb = journal["standby"]
    addrs, rts = sb["addrs"], sb["routes"]
    master = links.get(ipr, name=journal["ifname"])
    known = journal.get("master")           # None: up died before the TAP was recorded
    if master is not None and master.kind == "tun" and (known is None
                                                         or master.index == known["index"]):
        if journal.get("moved"):
            flags = {(a["address"], a["prefixlen"]): a["flags"] for a in addrs}
            addrs = links.addresses(ipr, master.index)
            rts = links.routes(ipr, master.index)
            for a in addrs:     # drop the NODAD that up() added, keep the rest
                a["flags"] = flags.get((a["address"], a["prefixlen"]),
                                       a["flags"] & ~links.IFA_F_NODAD)
        try:
            ipr.link("del", index=master.index)
        except NetlinkError as e:
            log.error("cannot delete the master %s: %s", journal["ifname"], e)
    Silencer(journal["ifname"]).destroy()
    for index, entry in list(journal["slaves"].items()):
        restore_slave(ipr, int(index), entry)
    if links.get(ipr, index=sb["index"]) is None:
        log.warning("the standby (index %d) is gone: nothing to rename back", sb["index"])
        return
    links.rename(ipr, sb["index"], sb["name"])
    links.set_link(ipr, sb["index"], f"restore {sb['name']}", mtu=sb["mtu"],
                   state="up" if sb["up"] else "down")
    links.add_addresses(ipr, sb["index"], addrs)
    links.add_routes(ipr, sb["index"], rts)


def recover(ifname: str) -> bool:
    """`down` without a daemon: restore from its journal; False if none."""
    journal = load(ifname)
    if journal is None:
        return False
    check_here(journal)
    with IPRoute() as ipr:
        restore(ipr, journal)
    forget(ifname)
    return True


def check_here(journal: dict, replacing: bool = False) -> None:
    """NetfoError unless the journal is this namespace's and its daemon is
    gone (or, replacing, is the one being replaced): only then may `down`
    or an adopting `up` act on it."""
    ifname, where = journal["ifname"], path(journal["ifname"])
    if journal.get("netns", netns_id()) != netns_id():
        raise NetfoError(f"{where} was written in another network namespace (one that is gone "
                         f"now): nothing touched; remove the file if {ifname} here is not "
                         f"netfo's")
    pid = journal.get("pid")
    if pid and pid != os.getpid() and _alive(pid) and not replacing:
        raise NetfoError(f"the daemon for {ifname} (pid {pid}) does not answer: "
                         f"stop it (kill {pid}) and run netfo down {ifname} again")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"netfo" in f.read()
    except OSError:
        return False
