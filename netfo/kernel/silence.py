"""Keep a slave's own IP stack silent: nftables ingress drop, no IPv6."""
from __future__ import annotations

import errno
import socket
from typing import Optional

from ..errors import NetfoError
from . import nftwatch


def _exists(index: int) -> bool:
    try:
        socket.if_indextoname(index)
    except OSError:
        return False
    return True


def sysctl_path(family: int, name: str, key: str) -> str:
    return f"/proc/sys/net/ipv{4 if family == 4 else 6}/conf/{name}/{key}"


def sysctl_get(family: int, name: str, key: str) -> Optional[str]:
    try:
        with open(sysctl_path(family, name, key)) as f:
            return f.read().strip()
    except OSError:
        return None


def sysctl_set(family: int, name: str, key: str, value: str) -> None:
    try:
        with open(sysctl_path(family, name, key), "w") as f:
            f.write(value)
    except OSError as e:
        raise NetfoError(f"cannot set net.ipv{family}.conf.{name}.{key}: {e.strerror}") from None


def chain_name(index: int) -> str:
    """A slave's ingress chain, by ifindex: a link name is the user's (the
    kernel allows '"', ';', '{' in one), never part of nft's syntax."""
    return f"in_{index}"


# What silencing sets on a slave, by sysctl: (family, key, value).  The
# journal keeps each one's old value under its key.  "0" is the one value
# that lets the slave's stack through (any rp_filter drops here: see below).
SYSCTLS = ((6, "disable_ipv6", "1"), (4, "rp_filter", "1"), (4, "arp_ignore", "1"))


def saved(name: str) -> dict:
    """name's sysctls that silencing changes, as they are now (journalled
    before they change; None: the link has no such setting)."""
    return {key: sysctl_get(family, name, key) for family, key, _ in SYSCTLS}


class Silencer:
    """Keeps a slave's own IP stack out of the way of the master.

    A frame for the master's IP that reaches a slave would otherwise also be
    answered by the slave's stack (weak host model): duplicate ping replies,
    ARP replies from the wrong interface.  An nftables netdev ingress chain
    (table netfo_MASTER, chain in_IFINDEX) drops everything arriving on the
    slave; ETH_P_ALL packet sockets see the frames before that hook, so
    netfo still gets them.  disable_ipv6 keeps the slave from sending DAD,
    RS and MLD with the shared MAC.

    The table and chains are made and removed over nfnetlink in-process
    (nftwatch.Query), never by running `nft`: well under a millisecond,
    where a process took 5 to 15 ms here and over a second in a guest
    with a slow root filesystem, all of it before a re-plugged VF could
    be brought up.

    A firewall reload (`nft flush ruleset`) removes the table until netfo
    puts it back (repair): for those milliseconds IPv4 is held off by
    sysctls no firewall touches.  A slave has no IPv4 address, so any
    rp_filter (1 or 2: the kernel takes the larger of all's and the
    link's) drops a packet whose source is not routed through it, which
    is every packet for the master: no echo reply, no TCP RST, and no ARP
    reply (ARP answers only what passes that route check; arp_ignore=1
    makes sure).
    """

    def __init__(self, master: str):
        self.table = f"netfo_{master}"
        self._query: Optional[nftwatch.Query] = None

    def silence(self, name: str, index: int, now: Optional[dict] = None) -> None:
        """Silence the link index (named name now); what it changes must
        be journalled (saved()) before.  now: saved() as just read, not
        read again."""
        chain = chain_name(index)
        self._drop_chain(chain)     # one left behind by a daemon that died
        _set_sysctls(name, now)
        try:
            self._q().add_chains(self.table, [(name, chain)])
        except OSError as e:
            raise NetfoError(f"cannot silence {name}: {e.strerror}") from None

    def _q(self) -> nftwatch.Query:
        if self._query is None:
            try:
                self._query = nftwatch.Query()
            except OSError as e:
                raise NetfoError(f"cannot reach nftables over netlink: {e.strerror} "
                                 "(is the nf_tables module available?)") from None
        return self._query

    def repair(self, held: list) -> list:
        """What a firewall or sysctl reload took away from the slaves in
        held ((name, ifindex) pairs), put back; returns what was missing,
        for the log (empty: all was in place).  A link that is gone is
        left to its removal's netlink event."""
        missing, fixed = [], []
        try:
            for name, index in held:
                if not _exists(index):
                    continue
                if not self._q().has_chain(self.table, chain_name(index)):
                    missing.append((name, chain_name(index)))
                fixed += [f"{key} on {name}" for key in _set_sysctls(name)]
            if missing:
                # over netlink: `nft` would take 5 to 15 ms, a window in
                # which only the sysctls hold the slaves' stacks back
                self._q().add_chains(self.table, missing)
        except OSError as e:
            raise NetfoError(str(e)) from None
        return [f"nft chain {self.table} {chain} ({name})" for name, chain in missing] + fixed

    def unsilence(self, name: str, old: Optional[dict], chain: str) -> None:
        """old: the journal entry with the sysctls' old values (None: the
        link is gone); chain: the chain's name as the journal recorded it."""
        self._drop_chain(chain)
        for family, key, _ in SYSCTLS:
            if old and old.get(key) is not None:
                sysctl_set(family, name, key, old[key])

    def _drop_chain(self, chain: str) -> None:
        self._delete(lambda q: q.has_chain(self.table, chain)
                     and q.delete_chain(self.table, chain))

    def destroy(self) -> None:
        """Remove the table with whatever chains are left in it."""
        self._delete(lambda q: q.has_table(self.table) and q.delete_table(self.table))

    def _delete(self, fn) -> None:
        """Best effort, as the undo of something that may not be there: a
        table or chain that is missing is what was wanted; nftables out
        of reach leaves nothing of ours to remove either."""
        try:
            fn(self._q())
        except NetfoError:
            pass
        except OSError as e:
            if e.errno != errno.ENOENT:
                self.close()        # a socket left mid-answer is not reused

    def close(self) -> None:
        if self._query is not None:
            self._query.close()
            self._query = None

    def __enter__(self) -> "Silencer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _set_sysctls(name: str, now: Optional[dict] = None) -> list:
    """Silencing's sysctls on name where they let the stack through (now:
    their values, saved(); None: read them); the keys set."""
    done = []
    for family, key, value in SYSCTLS:
        if (sysctl_get(family, name, key) if now is None else now[key]) == "0":
            sysctl_set(family, name, key, value)
            done.append(key)
    return done
