"""Which programs listen on a link with a packet socket (/proc/net/packet).

A DHCP client (dhclient, udhcpc, dhcpcd) reads its replies from an
AF_PACKET socket bound to the NIC's ifindex.  After `up` that ifindex is
the standby: the client keeps the socket but hears nothing once the primary
carries the traffic, so its renewals go unanswered.  netfo does not stop
or restart other programs; it names them, so the operator can restart them
on the master.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Tuple


def packet_inodes(index: int, table: str = "/proc/net/packet") -> set:
    """Socket inodes of the packet sockets bound to ifindex index, in this
    network namespace (/proc/net is the reader's)."""
    found = set()
    try:
        with open(table) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        # sk RefCnt Type Proto Iface R Rmem User Inode
        cols = line.split()
        if len(cols) >= 9 and cols[4] == str(index):
            found.add(cols[8])
    return found


def holders(inodes: Iterable[str], skip: Iterable[int] = ()) -> List[Tuple[int, str]]:
    """(pid, command name) of the processes with one of these sockets open."""
    want = {f"socket:[{i}]" for i in inodes}
    skip = set(skip)
    out = []
    if not want:
        return out
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) in skip:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(_link(f"/proc/{pid}/fd/{fd}") in want for fd in fds):
                continue
            with open(f"/proc/{pid}/comm") as f:
                out.append((int(pid), f.read().strip()))
        except OSError:             # gone meanwhile, or not ours to read
            continue
    return sorted(out)


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def on_link(index: int) -> List[Tuple[int, str]]:
    """Programs other than this one with a packet socket on ifindex index."""
    return holders(packet_inodes(index), skip=[os.getpid()])
