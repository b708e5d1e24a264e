"""Keep a slave's own IP stack silent: nftables ingress drop, no IPv6."""
from __future__ import annotations

import json
from typing import Optional

from ..errors import NetfoError
from .command import run


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


def _nft(*commands: dict) -> None:
    """Run nft commands given as JSON (libnftables' JSON schema): names and
    devices are JSON strings there, never parsed as nft syntax."""
    run(["nft", "-j", "-f", "-"], stdin=json.dumps({"nftables": list(commands)}))


class Silencer:
    """Keeps a slave's own IP stack out of the way of the master.

    A frame for the master's IP that reaches a slave would otherwise also be
    answered by the slave's stack (weak host model): duplicate ping replies,
    ARP replies from the wrong interface.  An nftables netdev ingress chain
    (table netfo_MASTER, chain in_IFINDEX) drops everything arriving on the
    slave; ETH_P_ALL packet sockets see the frames before that hook, so
    netfo still gets them.  disable_ipv6 keeps the slave from sending DAD,
    RS and MLD with the shared MAC.
    """

    def __init__(self, master: str):
        self.table = f"netfo_{master}"

    def silence(self, name: str, index: int) -> Optional[str]:
        """Silence the link index (named name now); returns its old
        disable_ipv6, for unsilence()."""
        chain = chain_name(index)
        self._drop_chain(chain)     # one left behind by a daemon that died
        old = sysctl_get(6, name, "disable_ipv6")
        if old is not None:
            sysctl_set(6, name, "disable_ipv6", "1")
        _nft({"add": {"table": {"family": "netdev", "name": self.table}}},
             {"add": {"chain": {"family": "netdev", "table": self.table, "name": chain,
                                "type": "filter", "hook": "ingress", "dev": name,
                                "prio": -500, "policy": "drop"}}})
        return old

    def unsilence(self, name: str, old_disable_ipv6: Optional[str], chain: str) -> None:
        """chain: the chain's name as the journal recorded it."""
        self._drop_chain(chain)
        if old_disable_ipv6 is not None:
            sysctl_set(6, name, "disable_ipv6", old_disable_ipv6)

    def _drop_chain(self, chain: str) -> None:
        try:
            _nft({"delete": {"chain": {"family": "netdev", "table": self.table, "name": chain}}})
        except NetfoError:
            pass

    def destroy(self) -> None:
        try:
            _nft({"delete": {"table": {"family": "netdev", "name": self.table}}})
        except NetfoError:
            pass
