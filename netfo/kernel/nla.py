"""Netlink attributes (struct nlattr, include/uapi/linux/netlink.h), for
the few netlink messages netfo builds and reads itself: those on paths
where pyroute2's decoding of every attribute costs too much (links.get,
the nftables watch).  Each attribute: length u16 (header included), type
u16, payload padded to 4 bytes."""
from __future__ import annotations

import struct
from typing import Iterator

HDR = struct.Struct("=HH")
TYPE_MASK = 0x3fff          # without NLA_F_NESTED, NLA_F_NET_BYTEORDER


def pack(kind: int, value: bytes) -> bytes:
    raw = HDR.pack(HDR.size + len(value), kind) + value
    return raw + bytes(-len(raw) % 4)


def parse(data: bytes, off: int, end: int) -> Iterator[tuple]:
    """(type, payload) of each attribute in data[off:end]."""
    while off + HDR.size <= end:
        length, kind = HDR.unpack_from(data, off)
        if length < HDR.size:
            return
        yield kind & TYPE_MASK, data[off + HDR.size:off + length]
        off += (length + 3) & ~3
