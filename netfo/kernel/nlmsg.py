"""The netlink messages netfo builds and reads itself, without pyroute2:
where its decoding of every attribute costs too much (links.get, on the
way to a re-plugged VF's IFF_UP) or where it has no message to offer
(nftables, nftwatch).  Layout from include/uapi/linux/netlink.h: a
struct nlmsghdr, the family's header, then attributes (struct nlattr:
length u16 with the header, type u16, payload padded to 4 bytes)."""
from __future__ import annotations

import struct
from typing import Iterator

HDR = struct.Struct("=IHHII")   # struct nlmsghdr: len, type, flags, seq, pid
ERROR = 2                       # NLMSG_ERROR
ATTR = struct.Struct("=HH")
TYPE_MASK = 0x3fff              # an attribute's type without NLA_F_NESTED, NLA_F_NET_BYTEORDER


def error(data: bytes, off: int = 0) -> int:
    """The errno of the NLMSG_ERROR message at off (0: an acknowledgement)."""
    return -struct.unpack_from("=i", data, off + HDR.size)[0]


def attr(kind: int, value: bytes) -> bytes:
    raw = ATTR.pack(ATTR.size + len(value), kind) + value
    return raw + bytes(-len(raw) % 4)


def attrs(data: bytes, off: int, end: int) -> Iterator[tuple]:
    """(type, payload) of each attribute in data[off:end]."""
    while off + ATTR.size <= end:
        length, kind = ATTR.unpack_from(data, off)
        if length < ATTR.size:
            return
        yield kind & TYPE_MASK, data[off + ATTR.size:off + length]
        off += (length + 3) & ~3
