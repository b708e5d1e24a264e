"""Timestamps of nftables changes to one table, as the kernel announces them.

Run in a namespace: `python nftmon.py TABLE`; prints "ready", then one JSON
line per removal or creation of TABLE or one of its chains:
{"mono": CLOCK_MONOTONIC s (one clock for every namespace), "msg": "DELTABLE"|
"DELCHAIN"|"NEWTABLE"|"NEWCHAIN", "chain": name or null}.  The times are
taken when the notification is read: a test measures how long the table
was missing without its own nft polling in between.
"""
import json
import select
import struct
import sys
import time

from netfo.kernel import nftwatch, nlmsg

NAMES = {0: "NEWTABLE", 2: "DELTABLE", 3: "NEWCHAIN", 5: "DELCHAIN"}


def main(table: str) -> None:
    w = nftwatch.Watch(table)
    print("ready", flush=True)
    while True:
        select.select([w], [], [])
        data = w.sock.recv(1 << 16)
        now = time.monotonic()
        off = 0
        while off + 16 <= len(data):
            length, mtype = struct.unpack_from("=IH", data, off)
            msg = mtype & 0xff
            if mtype >> 8 == nftwatch.NFNL_SUBSYS_NFTABLES and msg in NAMES:
                attrs = dict(nlmsg.attrs(data, off + 20, off + length))
                if nftwatch._cstr(attrs.get(1, b"")) == table:
                    chain = nftwatch._cstr(attrs[3]) if msg in (3, 5) and 3 in attrs else None
                    print(json.dumps({"mono": now, "msg": NAMES[msg], "chain": chain}), flush=True)
            off += (length + 3) & ~3


if __name__ == "__main__":
    main(sys.argv[1])
