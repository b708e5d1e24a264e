"""lifetimes: what is left of a lease when netfo puts an address back
(pure arithmetic, no root)."""
import os
import socket

from netfo import lifetimes
from netfo.kernel import listeners
from netfo.lifetimes import FOREVER


def entry(valid, preferred, read_at=100.0):
    return {"address": "192.0.2.10", "prefixlen": 24, "valid": valid,
            "preferred": preferred, "read_at": read_at}


def test_a_lease_loses_the_time_that_passed_rounded_down():
    assert lifetimes.remaining(entry(120, 60), now=100.0) == (120, 60)
    assert lifetimes.remaining(entry(120, 60), now=130.4) == (89, 29)


def test_preferred_runs_out_first_then_the_address_is_deprecated_not_gone():
    assert lifetimes.remaining(entry(120, 60), now=170.0) == (50, 0)


def test_an_expired_lease_does_not_come_back():
    assert lifetimes.remaining(entry(120, 120), now=220.0) is None
    # less than a second left counts as gone: never longer than granted
    assert lifetimes.remaining(entry(120, 120), now=219.5) is None


def test_permanent_stays_permanent_whatever_the_time():
    assert lifetimes.remaining(entry(FOREVER, FOREVER), now=1e9) == (FOREVER, FOREVER)
    # valid forever, preferred finite (ip addr add ... preferred_lft 30)
    assert lifetimes.remaining(entry(FOREVER, 30), now=110.0) == (FOREVER, 20)


def test_never_longer_than_granted():
    # a clock that went backwards (or a read_at in the future) gives no extra time
    assert lifetimes.remaining(entry(120, 60), now=50.0) == (120, 60)
    assert lifetimes.left(120, 100.0, now=100.999) == 119


def test_an_old_journal_without_lifetimes_means_permanent():
    assert lifetimes.remaining({"address": "192.0.2.10", "prefixlen": 24}) == (FOREVER, FOREVER)
    assert lifetimes.left(300, None) == 300


def test_describe():
    assert lifetimes.describe(FOREVER) == "forever"
    assert lifetimes.describe(42) == "42 s"


def test_packet_sockets_bound_to_one_ifindex(tmp_path):
    table = tmp_path / "packet"
    table.write_text(
        "sk               RefCnt Type Proto  Iface R Rmem   User   Inode\n"
        "000000009d48d2ed 3      3    0003   2     1 0      0      2762208\n"
        "00000000cf9fc166 3      3    0003   12    1 0      0      2763813\n"
        "000000003c36bb24 3      3    0003   2     1 0      0      2763826\n")
    assert listeners.packet_inodes(2, str(table)) == {"2762208", "2763826"}
    assert listeners.packet_inodes(3, str(table)) == set()
    assert listeners.holders(set()) == []


def test_holders_finds_the_process_with_the_socket_open():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        inode = str(os.fstat(s.fileno()).st_ino)
        assert (os.getpid(), open("/proc/self/comm").read().strip()) in listeners.holders({inode})
        assert listeners.holders({inode}, skip=[os.getpid()]) == []


def test_up_notes_a_moved_lease_and_the_client_left_on_the_standby():
    import time
    from netfo.build import Builder
    b = Builder(None, "ens10")
    now = time.monotonic()
    b.journal = {"standby": {"addrs": [
        dict(entry(120, 120, read_at=now), address="192.0.2.10"),
        dict(entry(FOREVER, FOREVER, read_at=now), address="192.0.2.11")]}}
    b.listening = [(4242, "dhclient")]
    b._advise("ens10nsby")
    lease, client = b.notes
    assert "192.0.2.10/24 (valid 119 s)" in lease or "192.0.2.10/24 (valid 120 s)" in lease
    assert "192.0.2.11" not in lease                # permanent: nothing to renew
    assert client.startswith("dhclient (pid 4242) still listens on ens10nsby")


def test_no_note_without_a_lease():
    from netfo.build import Builder
    b = Builder(None, "ens10")
    b.journal = {"standby": {"addrs": [entry(FOREVER, FOREVER)]}}
    b._advise("ens10nsby")
    assert b.notes == []


def test_a_route_expiry_in_fractions_rounds_down():
    # RTA_CACHEINFO's rta_expires is in clock ticks: 0.5 s left is none left
    assert lifetimes.left(0.5, 10.0, now=10.0) == 0
    assert lifetimes.left(299.99, 10.0, now=11.0) == 298
