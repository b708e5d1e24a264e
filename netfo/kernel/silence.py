"""Keep a slave's own IP stack silent: nftables ingress drop, no IPv6."""
from __future__ import annotations

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


class Silencer:
    """Keeps a slave's own IP stack out of the way of the master.

    A frame for the master's IP that reaches a slave would otherwise also be
    answered by the slave's stack (weak host model): duplicate ping replies,
    ARP replies from the wrong interface.  An nftables netdev ingress chain
    drops everything arriving on the slave; ETH_P_ALL packet sockets see the
    frames before that hook, so netfo still gets them.  disable_ipv6 keeps
    the slave from sending DAD, RS and MLD with the shared MAC.
    """

    def __init__(self, master: str):
        self.table = f"netfo_{master}"

    def silence(self, name: str) -> Optional[str]:
        """Silence name; returns its old disable_ipv6, for unsilence()."""
        self._drop_chain(name)      # a chain left by a deleted link of that name
        old = sysctl_get(6, name, "disable_ipv6")
        if old is not None:
            sysctl_set(6, name, "disable_ipv6", "1")
        run(["nft", "-f", "-"], stdin=(
            f"table netdev {self.table} {{\n"
            f"  chain in_{name} {{ type filter hook ingress device \"{name}\" priority -500; policy drop; }}\n"
            f"}}\n"))
        return old

    def unsilence(self, name: str, old_disable_ipv6: Optional[str], chain: str = "") -> None:
        """chain: the name the link had when silenced, if it was renamed since."""
        self._drop_chain(chain or name)
        if old_disable_ipv6 is not None:
            sysctl_set(6, name, "disable_ipv6", old_disable_ipv6)

    def _drop_chain(self, name: str) -> None:
        try:
            run(["nft", "delete", "chain", "netdev", self.table, f"in_{name}"])
        except NetfoError:
            pass

    def destroy(self) -> None:
        try:
            run(["nft", "delete", "table", "netdev", self.table])
        except NetfoError:
            pass
