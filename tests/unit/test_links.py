"""links.link_events: the ifindexes a datagram of link events is about;
links.get: a link message read as pyroute2 reads it (no root)."""
import struct

from netfo.kernel import links, nlmsg


def message(kind: int, index: int, attrs: bytes = b"", flags: int = 0x1) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0xFFFFFFFF) + attrs
    msg = struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body
    return msg + b"\0" * (-len(msg) % 4)


def test_link_events_reads_each_link_message():
    # an attribute of odd length makes the next message start after padding
    data = (message(links.RTM_NEWLINK, 7, b"\x07\x00\x03\x00ab\x00")
            + message(20, 9)                            # RTM_NEWADDR: not a link
            + message(links.RTM_DELLINK, 12))
    assert list(links.link_events(data)) == [7, 12]


def test_link_events_stops_at_a_truncated_message():
    # a header that claims more than the datagram holds (a short read)
    data = message(links.RTM_NEWLINK, 3) + struct.pack("=IHHII", 32, links.RTM_NEWLINK, 0, 0, 0)
    assert list(links.link_events(data)) == [3]


def decoded_by_pyroute2(data: bytes):
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    msg = ifinfmsg(data)
    msg.decode()
    return links.link_from_msg(msg)


def test_a_link_message_reads_as_pyroute2_reads_it():
    # what the daemon reads of a re-plugged VF: nested kind, permanent MAC,
    # IFLA_CARRIER off while IFF_LOWER_UP is still set
    attrs = (nlmsg.attr(links.IFLA_IFNAME, b"ens11\0")
             + nlmsg.attr(links.IFLA_ADDRESS, bytes.fromhex("525400aabbcc"))
             + nlmsg.attr(links.IFLA_PERM_ADDRESS, bytes.fromhex("525400AABBCD"))
             + nlmsg.attr(links.IFLA_MTU, struct.pack("=I", 9000))
             + nlmsg.attr(links.IFLA_MAX_MTU, struct.pack("=I", 9216))
             + nlmsg.attr(links.IFLA_CARRIER, b"\0")
             + nlmsg.attr(links.IFLA_LINKINFO | 0x8000, nlmsg.attr(links.IFLA_INFO_KIND, b"veth\0")))
    data = message(links.RTM_NEWLINK, 11, attrs, flags=links.IFF_UP | links.IFF_LOWER_UP)
    mine = links._link_from_bytes(data, nlmsg.HDR.size, len(data))
    assert mine == decoded_by_pyroute2(data)
    assert (mine.name, mine.kind, mine.identity_mac, mine.carrier, mine.up) == \
        ("ens11", "veth", "52:54:00:aa:bb:cd", False, True)


def test_a_link_message_without_the_optional_attributes():
    data = message(links.RTM_NEWLINK, 4, nlmsg.attr(links.IFLA_IFNAME, b"tun0\0"))
    mine = links._link_from_bytes(data, nlmsg.HDR.size, len(data))
    assert mine == decoded_by_pyroute2(data)
    assert (mine.mac, mine.perm_mac, mine.kind, mine.mtu, mine.carrier) == ("", None, None, 0, False)


def test_get_reads_every_link_here_as_pyroute2_does():
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        theirs = [links.link_from_msg(m) for m in ipr.get_links()]
    assert theirs
    for link in theirs:
        assert links.get(index=link.index) == link
        assert links.get(name=link.name) == link


def test_get_of_a_link_that_is_not_there():
    assert links.get(index=2**31 - 1) is None
    assert links.get(name="nf-no-such0") is None
