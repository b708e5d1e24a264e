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
    # dumps, not dump: dump encodes in Python, dumps in C (a re-plugged VF
    # waits for this save before its IFF_UP)
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(json.dumps(journal))
    os.replace(tmp, path(journal["ifname"]))


def load(ifname: str) -> Optional[dict]:
    try:
        with open(path(ifname)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def from_here(journal: dict) -> bool:
    """Written in this network namespace (not in a gone one whose nsfs
    inode this one reuses)?"""
    return journal.get("netns", netns_id()) == netns_id()


def retire(ifname: str) -> None:
    """Set aside a journal of a namespace that is gone (kept for a look)."""
    os.replace(path(ifname), path(ifname) + ".foreign")
    log.warning("%s: set aside %s: written in a network namespace that is gone",
                ifname, path(ifname))


def forget(ifname: str) -> None:
    try:
        os.unlink(path(ifname))
    except FileNotFoundError:
        pass


def slave_chain(entry: dict) -> str:
    """A slave's nft chain: in_IFINDEX (journals of netfo before that named
    it after the link: in_NAME, kept in "silenced_as")."""
    return entry.get("chain") or f"in_{entry['silenced_as']}"


def restore_slave(ipr: IPRoute, index: int, entry: dict, gone: bool = False) -> None:
    """Undo what enslaving did to one link (sysctl, nft chain, MTU, admin).
    NetfoError if a step fails (the rest of this link is then not tried)."""
    link = None if gone else links.get(index=index)
    # By its name now: the user (udev) may have renamed it meanwhile.
    name = link.name if link is not None else entry["name"]
    with Silencer(entry["master"]) as silencer:
        silencer.unsilence(name, None if link is None else entry, chain=slave_chain(entry))
    if link is None:
        return
    if link.mtu != entry["mtu"]:
        links.set_link(ipr, index, f"restore {link.name} MTU", mtu=entry["mtu"])
    links.restore_max_sizes(ipr, index, link.name, entry.get("max_sizes"))
    if not entry["was_up"] and link.up:
        links.set_link(ipr, index, f"set {link.name} down again", state="down")


def _why(e: BaseException) -> str:
    if isinstance(e, NetlinkError) and len(e.args) > 1:
        return str(e.args[1])
    return str(e)


def restore(ipr: IPRoute, journal: dict) -> list:
    """Put the machine back as the journal says it was before up.

    What goes back onto the standby is what the master has now (the user may
    have changed it since up), once addresses were moved; else the snapshot.

    Every step is tried even when one fails; what failed is returned, one
    phrase each ([]: all restored), and the journal (saved) then says only
    what is left to do: `restore` again, once the cause is fixed, finishes
    the job.
    """
    left: list = []
    ifname, sb = journal["ifname"], journal["standby"]
    master = links.get(name=ifname)
    known = journal.get("master")           # None: up died before the TAP was recorded
    if (not journal.get("master_deleted") and master is not None and master.kind == "tun"
            and (known is None or master.index == known["index"])):
        addrs, rts = sb["addrs"], sb["routes"]
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
            log.error("cannot delete the master %s: %s", ifname, _why(e))
            left.append(f"delete the master {ifname} ({_why(e)})")
        else:
            # What goes back onto the standby lives in the journal only now.
            sb["addrs"], sb["routes"] = addrs, rts
            journal["master_deleted"], journal["moved"] = True, False
            save(journal)
    with Silencer(ifname) as silencer:
        silencer.destroy()
    for index, entry in list(journal["slaves"].items()):
        try:
            restore_slave(ipr, int(index), entry)
        except (NetfoError, NetlinkError, OSError) as e:
            log.error("cannot restore %s: %s", entry["name"], _why(e))
            left.append(f"restore {entry['name']} ({_why(e)})")
        else:
            del journal["slaves"][index]
    if links.get(index=sb["index"]) is None:
        log.warning("the standby (index %d) is gone: nothing to rename back", sb["index"])
        return _left(journal, left)
    steps = [(f"rename the standby (index {sb['index']}) back to {sb['name']}",
              lambda: links.rename(ipr, sb["index"], sb["name"])),
             (f"restore {sb['name']}'s MTU {sb['mtu']} and state",
              lambda: links.set_link(ipr, sb["index"], f"restore {sb['name']}", mtu=sb["mtu"],
                                     state="up" if sb["up"] else "down")),
             (f"put {sb['name']}'s addresses back",
              lambda: links.add_addresses(ipr, sb["index"], sb["addrs"])),
             (f"put {sb['name']}'s routes back",
              lambda: links.add_routes(ipr, sb["index"], sb["routes"]))]
    for what, fn in steps:              # each is idempotent: a second restore redoes them
        try:
            fn()
        except (NetfoError, NetlinkError, OSError) as e:
            log.error("cannot %s: %s", what, _why(e))
            left.append(f"{what} ({_why(e)})")
    return _left(journal, left)


def _left(journal: dict, left: list) -> list:
    journal["left"] = left
    if left:
        save(journal)
    return left


def left_line(journal: dict) -> str:
    """The one line that says what a failed restore left to do."""
    ifname = journal["ifname"]
    return (f"{ifname} is not fully restored; left to do: {'; '.join(journal['left'])}. "
            f"The journal {path(ifname)} keeps it: fix the cause, then run "
            f"netfo down {ifname} again")


def finish(journal: dict) -> None:
    """After restore: the journal goes if nothing is left, else NetfoError
    with the one line (the journal stays, saved by restore)."""
    if journal.get("left"):
        raise NetfoError(left_line(journal))
    forget(journal["ifname"])


def recover(ifname: str) -> bool:
    """`down` without a daemon: restore from its journal; False if none.
    NetfoError (the journal kept) if a step failed."""
    journal = load(ifname)
    if journal is None:
        return False
    check_here(journal)
    with IPRoute() as ipr:
        restore(ipr, journal)
    finish(journal)
    return True


def check_here(journal: dict, replacing: bool = False) -> None:
    """NetfoError unless the journal is this namespace's and its daemon is
    gone (or, replacing, is the one being replaced): only then may `down`
    or an adopting `up` act on it."""
    ifname, where = journal["ifname"], path(journal["ifname"])
    if not from_here(journal):
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
