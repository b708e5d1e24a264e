"""Noticing that someone removed netfo's nftables table or a slave's chain.

`nft flush ruleset` (Debian's nftables.service starts with it) and a
firewalld reload delete every table, netfo's too.  The kernel announces
each change of the ruleset on the NFNLGRP_NFTABLES multicast group of
NETLINK_NETFILTER; a deleted table or chain is an NFT_MSG_DELTABLE or
NFT_MSG_DELCHAIN message whose first attribute (NFTA_TABLE_NAME,
NFTA_CHAIN_TABLE: both type 1) names the table.  Whether a chain is there
is asked over netlink too (NFT_MSG_GETCHAIN): no `nft` process per check;
and what is missing is put back over netlink (one NFT_MSG_NEWTABLE/NEWCHAIN
batch, well under a millisecond, where running `nft` takes 5 to 15 ms).

Message layout (include/uapi/linux/netfilter/nfnetlink.h, nf_tables.h):
nlmsghdr (16 bytes), nfgenmsg (family u8, version u8, res_id be16), then
netlink attributes (len u16, type u16, payload padded to 4 bytes).
"""
from __future__ import annotations

import errno
import os
import socket
import struct
from typing import Iterator, Optional

from . import nlmsg

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWTABLE, NFT_MSG_GETTABLE, NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN = 0, 1, 2, 3
NFT_MSG_GETCHAIN, NFT_MSG_DELCHAIN, NFT_MSG_NEWGEN = 4, 5, 15
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFTA_TABLE_NAME = 1
NFTA_CHAIN_HOOK, NFTA_CHAIN_POLICY, NFTA_CHAIN_TYPE = 4, 5, 7
NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY, NFTA_HOOK_DEV = 1, 2, 3
NF_NETDEV_INGRESS, NF_DROP = 0, 0
NLA_F_NESTED = 0x8000
NFTA_GEN_PROC_PID, NFTA_GEN_PROC_NAME = 2, 3
NFPROTO_NETDEV = 5
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME = 1, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
_NFGEN = struct.Struct("=BBH")          # nfgenmsg (res_id: big-endian, htons)


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


class Watch:
    """A socket that becomes readable when the nftables ruleset changes."""

    def __init__(self, table: str):
        self.table = table
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.bind((0, 0))      # unbound, it would get no multicast
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> Optional[str]:
        """Read what is queued.  None: nothing removed from our table;
        else a cause for the log: the program whose ruleset change removed
        a table or chain of ours ("nft (pid 123)", from the NFT_MSG_NEWGEN
        that ends each change), or "lost notifications" (ENOBUFS: the
        kernel dropped some, so anything may have happened)."""
        cause, hit = None, False
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return (cause or "an unknown process") if hit else None
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                hit, cause = True, "lost notifications"
                continue
            for removed, by in self._messages(data):
                hit = hit or removed
                if removed is False and by and hit and cause != "lost notifications":
                    cause = by

    def _messages(self, data: bytes) -> Iterator[tuple]:
        """(True, None) per removal from our table, (False, "proc (pid N)")
        per generation change (the process that made it)."""
        off = 0
        while off + nlmsg.HDR.size <= len(data):
            length, mtype = nlmsg.HDR.unpack_from(data, off)[:2]
            if length < nlmsg.HDR.size or off + length > len(data):
                return
            subsys, msg = mtype >> 8, mtype & 0xff
            if subsys == NFNL_SUBSYS_NFTABLES and msg in (NFT_MSG_DELTABLE, NFT_MSG_DELCHAIN):
                family = data[off + nlmsg.HDR.size]
                body = off + nlmsg.HDR.size + _NFGEN.size
                names = dict(nlmsg.attrs(data, body, off + length))
                # attribute 1 is the table's name in both messages
                if family == NFPROTO_NETDEV and _cstr(names.get(1, b"")) == self.table:
                    yield True, None
            elif subsys == NFNL_SUBSYS_NFTABLES and msg == NFT_MSG_NEWGEN:
                gen = dict(nlmsg.attrs(data, off + nlmsg.HDR.size + _NFGEN.size, off + length))
                if NFTA_GEN_PROC_NAME in gen and NFTA_GEN_PROC_PID in gen:
                    pid = struct.unpack("!I", gen[NFTA_GEN_PROC_PID][:4])[0]
                    yield False, f"{_cstr(gen[NFTA_GEN_PROC_NAME])} (pid {pid})"
            off += (length + 3) & ~3

    def close(self) -> None:
        self.sock.close()


def _str(kind: int, value: str) -> bytes:
    return nlmsg.attr(kind, value.encode() + b"\0")


class Query:
    """Asks the kernel whether chains of a netdev table exist (one
    request and its answer each, microseconds: fine on every tick), and
    creates and deletes them and their table: silencing a slave needs no
    `nft` process (one takes 5 to 15 ms here, over a second in a slow
    guest, all of it before a re-plugged VF can be brought up)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.settimeout(2.0)
        self.seq = 0

    def _msg(self, msg: int, flags: int, family: int, attrs: bytes, res_id: int = 0) -> bytes:
        self.seq += 1
        body = _NFGEN.pack(family, 0, socket.htons(res_id)) + attrs
        return nlmsg.HDR.pack(nlmsg.HDR.size + len(body), msg, NLM_F_REQUEST | flags, self.seq, 0) + body

    def _answers(self, want: set) -> bool:
        """Read until every seq in want is acknowledged; whether any data
        message came first (a GET's answer).  OSError: the first error."""
        found = False
        while want:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + nlmsg.HDR.size <= len(data):
                length, mtype, _, seq, _ = nlmsg.HDR.unpack_from(data, off)
                if length < nlmsg.HDR.size:
                    break
                if seq in want:
                    if mtype == nlmsg.ERROR:
                        err = nlmsg.error(data, off)
                        if err:
                            raise OSError(err, os.strerror(err))
                        want.discard(seq)
                    else:
                        found = True
                off += (length + 3) & ~3
        return found

    def has_chain(self, table: str, chain: str) -> bool:
        return self._has(NFT_MSG_GETCHAIN,
                         _str(NFTA_CHAIN_TABLE, table) + _str(NFTA_CHAIN_NAME, chain),
                         f"nft chain {table} {chain}")

    def has_table(self, table: str) -> bool:
        return self._has(NFT_MSG_GETTABLE, _str(NFTA_TABLE_NAME, table), f"nft table {table}")

    def _has(self, msg: int, attrs: bytes, what: str) -> bool:
        """Whether a GET finds it.  Asking first is what keeps a delete of
        something missing from failing its transaction: the kernel's abort
        of one costs 10 to 15 ms here (it waits for an RCU grace period),
        a GET microseconds."""
        self.sock.send(self._msg((NFNL_SUBSYS_NFTABLES << 8) | msg, NLM_F_ACK,
                                 NFPROTO_NETDEV, attrs))
        try:
            return self._answers({self.seq})
        except OSError as e:
            if e.errno == errno.ENOENT:         # it, or its table
                return False
            raise OSError(e.errno, f"asking for {what}: {e.strerror}") from None

    def add_chains(self, table: str, chains: list) -> None:
        """One transaction: table (if missing) and, per (device, chain) in
        chains, an ingress chain with policy drop at priority -500 (what
        silences a slave: see silence.Silencer)."""
        sub = NFNL_SUBSYS_NFTABLES << 8
        # no NLM_F_EXCL: what exists already is left as it is
        msgs = [(sub | NFT_MSG_NEWTABLE, NLM_F_CREATE, _str(NFTA_TABLE_NAME, table))]
        for dev, chain in chains:
            hook = (nlmsg.attr(NFTA_HOOK_HOOKNUM, struct.pack("!I", NF_NETDEV_INGRESS))
                    + nlmsg.attr(NFTA_HOOK_PRIORITY, struct.pack("!i", -500))
                    + _str(NFTA_HOOK_DEV, dev))
            msgs.append((sub | NFT_MSG_NEWCHAIN, NLM_F_CREATE,
                         _str(NFTA_CHAIN_TABLE, table) + _str(NFTA_CHAIN_NAME, chain)
                         + nlmsg.attr(NFTA_CHAIN_HOOK | NLA_F_NESTED, hook)
                         + nlmsg.attr(NFTA_CHAIN_POLICY, struct.pack("!I", NF_DROP))
                         + _str(NFTA_CHAIN_TYPE, "filter")))
        self._batch(msgs, f"creating nft table netdev {table}")

    def delete_chain(self, table: str, chain: str) -> None:
        """OSError ENOENT: no such chain (or table)."""
        self._batch([((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELCHAIN, 0,
                      _str(NFTA_CHAIN_TABLE, table) + _str(NFTA_CHAIN_NAME, chain))],
                    f"deleting nft chain netdev {table} {chain}")

    def delete_table(self, table: str) -> None:
        """The table and its chains.  OSError ENOENT: no such table."""
        self._batch([((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELTABLE, 0,
                      _str(NFTA_TABLE_NAME, table))],
                    f"deleting nft table netdev {table}")

    def _batch(self, msgs: list, what: str) -> None:
        """One nfnetlink transaction of (type, flags, attrs) messages on
        netdev objects, each acknowledged: all or nothing."""
        parts = [self._msg(NFNL_MSG_BATCH_BEGIN, 0, socket.AF_UNSPEC, b"", NFNL_SUBSYS_NFTABLES)]
        acks = set()
        for mtype, flags, attrs in msgs:
            parts.append(self._msg(mtype, flags | NLM_F_ACK, NFPROTO_NETDEV, attrs))
            acks.add(self.seq)
        parts.append(self._msg(NFNL_MSG_BATCH_END, 0, socket.AF_UNSPEC, b"", NFNL_SUBSYS_NFTABLES))
        self.sock.send(b"".join(parts))
        try:
            self._answers(acks)
        except OSError as e:
            raise OSError(e.errno, f"{what}: {e.strerror}") from None

    def close(self) -> None:
        self.sock.close()
