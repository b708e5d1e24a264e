"""Reading nftables' netlink announcements (netfo.kernel.nftwatch), on
messages built as the kernel sends them (no root, no socket)."""
import struct

from netfo import events
from netfo.kernel import nftwatch, nlmsg


def msg(mtype: int, family: int, *attrs: tuple) -> bytes:
    body = struct.pack("=BBH", family, 0, 0) + b"".join(nlmsg.attr(k, v) for k, v in attrs)
    return struct.pack("=IHHII", 16 + len(body), (10 << 8) | mtype, 0, 0, 0) + body


def watch(table: str) -> nftwatch.Watch:
    w = object.__new__(nftwatch.Watch)      # the parsing only: no netlink socket
    w.table = table
    return w


def test_removals_of_our_table_and_who_made_them():
    data = (msg(nftwatch.NFT_MSG_DELCHAIN, 5, (1, b"netfo_ens10\0"), (3, b"in_3\0"))
            + msg(nftwatch.NFT_MSG_DELTABLE, 5, (1, b"netfo_ens10\0"))
            + msg(nftwatch.NFT_MSG_NEWGEN, 0, (1, struct.pack("!I", 7)),
                  (2, struct.pack("!I", 812)), (3, b"nft\0")))
    assert list(watch("netfo_ens10")._messages(data)) == [
        (True, None), (True, None), (False, "nft (pid 812)")]


def test_other_tables_families_and_creations_are_not_removals():
    data = (msg(nftwatch.NFT_MSG_DELTABLE, 5, (1, b"netfo_ens100\0"))     # another master's
            + msg(nftwatch.NFT_MSG_DELTABLE, 2, (1, b"netfo_ens10\0"))    # ip, not netdev
            + msg(0, 5, (1, b"netfo_ens10\0"))                           # NEWTABLE
            + msg(nftwatch.NFT_MSG_DELCHAIN, 5, (1, b"netfo_ens10\0"), (3, b"in_3\0"))[:-4])
    assert [r for r in watch("netfo_ens10")._messages(data) if r[0]] == []


def test_firewall_event_for_people():
    e = {"kind": "firewall", "master": "ens10", "cause": "nft (pid 812)",
         "restored": ["nft chain netfo_ens10 in_3 (ens11)", "disable_ipv6 on ens11"]}
    assert "firewall" in events.KINDS
    assert events.describe(e) == ("ens10 slaves' silencing re-installed: nft chain netfo_ens10 "
                                  "in_3 (ens11), disable_ipv6 on ens11 (cause: nft (pid 812))")
