"""links.link_events: the ifindexes a datagram of link events is about
(pure parsing, no root)."""
import struct

from netfo.kernel import links


def message(kind: int, index: int, attrs: bytes = b"") -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, 0x1, 0xFFFFFFFF) + attrs
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
