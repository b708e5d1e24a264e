"""Ping and status through netfo in the namespace lab."""
from netfo.lab import GUEST_IP4, PEER_IP4, PEER_IP6

from support.traffic import ping


def test_ping_no_loss_no_duplicates(lab, netfo):
    st = netfo.status()
    assert st["active"] == "primary"
    assert {s["role"]: s["name"] for s in st["slaves"]} == {"primary": "ens11", "standby": "ens10nsby"}
    for dst in (PEER_IP4, PEER_IP6):
        r = ping(lab, "guest", dst, count=20)
        assert (r.received, r.duplicates) == (20, 0), dst
    # from the other side too: only the master answers
    r = ping(lab, "peer", GUEST_IP4, count=20)
    assert (r.received, r.duplicates) == (20, 0)
    st = netfo.status()
    assert st["master"]["stats"]["tx_packets"] >= 40
    primary = netfo.slave("primary")
    assert primary["stats"]["tx_packets"] >= 40
    assert netfo.slave("standby")["stats"]["tx_packets"] == 0
