"""DHCP through netfo with the real programs: dnsmasq leases an address for
2 minutes on the peer side, dhclient holds it on ens10 in the guest.

`up` moves the leased address to the master with what is left of its
lifetime (not forever) and names dhclient as still listening on the
standby, where it misses the answer to its renewal; restarted on the master
(the README's recipe) it renews through it; `down` puts the address back on
the NIC with what is left then, where the client is restarted again.
"""
from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from netfo.lab import MAC, PEER_IP6
from netfo.lifetimes import FOREVER

from support.dnsmasq import Dnsmasq, wait_for
from support.harness import Netfo

T1 = 12             # renewal after 12 s (dnsmasq's shortest lease is 2 minutes)
LEASE = 120
LEASED_V6, EXPIRING_NET = "fd00:12::99", "fd00:99::/64"

# What Debian's /sbin/dhclient-script does with the address (add at BOUND
# and REBOOT, `change` with the new lifetimes at RENEW/REBIND, flush when
# it ends), without its hooks, which would touch the host's /etc.
SCRIPT = """#!/bin/sh
echo "$reason $interface $new_ip_address" >> "$0.log"
case "$reason" in
PREINIT) ip link set dev "$interface" up ;;
BOUND|REBOOT)
    ip -4 addr add "$new_ip_address/$new_subnet_mask" broadcast "$new_broadcast_address" \\
        valid_lft "$new_dhcp_lease_time" preferred_lft "$new_dhcp_lease_time" dev "$interface" ;;
RENEW|REBIND)
    ip -4 addr change "$new_ip_address/$new_subnet_mask" broadcast "$new_broadcast_address" \\
        valid_lft "$new_dhcp_lease_time" preferred_lft "$new_dhcp_lease_time" dev "$interface" ;;
EXPIRE|FAIL|RELEASE|STOP)
    [ -n "$old_ip_address" ] && ip -4 addr flush dev "$interface" label "$interface" ;;
esac
exit 0
"""


def addrs(lab, ifname: str) -> dict:
    """address -> (valid_lft, preferred_lft) of ifname's global addresses."""
    out = json.loads(lab.run("guest", "ip", "-j", "addr", "show", "dev", ifname).stdout)
    return {a["local"]: (a["valid_life_time"], a["preferred_life_time"])
            for a in out[0]["addr_info"] if a.get("scope") == "global"} if out else {}


def route_expiry(lab, ifname: str):
    out = json.loads(lab.run("guest", "ip", "-j", "-6", "route", "show", EXPIRING_NET,
                             "dev", ifname).stdout)
    return out[0].get("expires") if out else None


class Dhclient:
    def __init__(self, lab, tmp):
        self.lab, self.tmp = lab, tmp
        self.pidfile = tmp / "dhclient.pid"
        self.script = tmp / "script"
        self.script.write_text(SCRIPT)
        self.script.chmod(0o755)
        (tmp / "dhclient.conf").write_text("")

    def start(self, ifname: str = "ens10") -> None:
        """Like `dhclient ens10` at boot: returns once bound (-1: one try)."""
        t = str(self.tmp)
        self.lab.run("guest", "dhclient", "-1", "-cf", f"{t}/dhclient.conf", "-lf",
                     f"{t}/dhclient.leases", "-pf", str(self.pidfile), "-sf", str(self.script),
                     ifname, timeout=40)

    @property
    def pid(self) -> int:
        return int(self.pidfile.read_text())

    def stop(self) -> None:
        """SIGTERM: dhclient exits without running its script (the address stays)."""
        try:
            pid = self.pid
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            return
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 5, "dhclient to exit")

    def reasons(self) -> list:
        try:
            return (self.tmp / "script.log").read_text().split("\n")
        except OSError:
            return []


@pytest.fixture
def dnsmasq(lab):
    """dnsmasq serving 2-minute leases (its shortest) on the peer's eth0,
    renewal time T1; the guest's NIC has carrier and no IPv4 address."""
    lab.link("virtio", "up")            # the NIC has carrier: the client can get a lease on it
    lab.run("guest", "ip", "-4", "addr", "flush", "dev", "ens10")
    server = Dnsmasq(lab, lease="2m", options=(f"option:T1,{T1}", "option:T2,100"))
    try:
        yield server
    finally:
        server.stop()


def test_lease_keeps_its_lifetime_and_renews_through_the_master(lab, dnsmasq, tmp_path):
    log = dnsmasq                       # its log, read as DHCP events
    # SLAAC-like: an IPv6 address and a route that expire
    lab.run("guest", "ip", "-6", "addr", "add", f"{LEASED_V6}/64", "dev", "ens10",
            "valid_lft", "300", "preferred_lft", "200", "nodad")
    lab.run("guest", "ip", "-6", "route", "add", EXPIRING_NET, "via", PEER_IP6, "dev", "ens10",
            "expires", "300")
    client = Dhclient(lab, tmp_path)
    try:
        client.start()
        leased = addrs(lab, "ens10")
        ip = next(a for a in leased if a.startswith("192.168.12."))
        assert 0 < leased[ip][0] <= LEASE, leased
        before, read_at = leased[ip][0], time.monotonic()
        time.sleep(2)                   # some of the lease goes by before up

        with Netfo(lab) as n:
            # on the master with what was left, not forever and not more
            on_master = addrs(lab, "ens10")
            assert ip in on_master, on_master
            valid, preferred = on_master[ip]
            gone = time.monotonic() - read_at
            assert valid != FOREVER and before - gone - 1 <= valid <= before - 2, (before, on_master)
            assert 0 < preferred <= valid
            v6_valid, v6_preferred = on_master[LEASED_V6]
            assert 280 <= v6_valid <= 298 and v6_preferred <= 198, on_master
            assert on_master["fd00:12::53"] == (FOREVER, FOREVER)    # permanent stays so
            assert 0 < route_expiry(lab, "ens10") <= 298
            # up says so, and names the client left listening on the standby
            text = n.read_log()
            assert f"moved with what is left of its lifetime: {ip}/24 (valid " in text, n.tail()
            assert f"dhclient (pid {client.pid}) still listens on ens10nsby" in text, n.tail()

            # Left on the standby, the client's renewal at T1 reaches dnsmasq
            # through the master and is answered, but the client never hears it.
            seen = len(log.events())
            wait_for(lambda: ("DHCPACK", ip, MAC) in log.events()[seen:], T1 + 5,
                     "the left client's renewal")
            time.sleep(1)
            assert "RENEW ens10 " + ip not in client.reasons(), client.reasons()
            assert addrs(lab, "ens10")[ip][0] < valid

            # The README's recipe: restart the client on the master.
            seen = len(log.events())
            client.stop()
            client.start()
            sockets = lab.run("guest", "cat", "/proc/net/packet").stdout
            master = n.status()["master"]["index"]
            assert re.search(rf"^\S+\s+\d+\s+\d+\s+\S+\s+{master}\s", sockets, re.M), sockets
            # dnsmasq saw the master's MAC ask and answered, after up
            after = log.events()[seen:]
            assert ("DHCPREQUEST", ip, MAC) in after and ("DHCPACK", ip, MAC) in after, after
            at_reboot = addrs(lab, "ens10")[ip][0]

            # the renewal at T1 goes through the master and refreshes the lifetime
            def renewed():
                return "RENEW ens10 " + ip in client.reasons()
            wait_for(renewed, T1 + 15, "dhclient's renewal (RENEW)")
            refreshed = addrs(lab, "ens10")[ip][0]
            assert refreshed > at_reboot and refreshed >= LEASE - 3, (at_reboot, refreshed)
            acks = [e for e in log.events()[seen:] if e == ("DHCPACK", ip, MAC)]
            assert len(acks) >= 2, log.events()[seen:]
            last = addrs(lab, "ens10")[ip][0]

        # back on the NIC with what was left of it
        back = addrs(lab, "ens10")
        assert ip in back, back
        assert 0 < back[ip][0] <= last and back[ip][0] != FOREVER, (last, back)
        assert 0 < back[LEASED_V6][0] < v6_valid, back
        assert back["fd00:12::53"] == (FOREVER, FOREVER)
        assert 0 < route_expiry(lab, "ens10") < 298
        # The client still holds a socket on the deleted master: restart it
        # on the NIC, where it asks for the same address again.
        seen = len(log.events())
        client.stop()
        client.start()
        assert ("DHCPACK", ip, MAC) in log.events()[seen:], log.events()[seen:]
        nic = json.loads(lab.run("guest", "ip", "-j", "link", "show", "ens10").stdout)[0]
        sockets = lab.run("guest", "cat", "/proc/net/packet").stdout
        assert re.search(rf"^\S+\s+\d+\s+\d+\s+\S+\s+{nic['ifindex']}\s", sockets, re.M), sockets
        assert 0 < addrs(lab, "ens10")[ip][0] <= LEASE
    finally:
        client.stop()


UDHCPC_SCRIPT = """#!/bin/sh
echo "$1 $interface $ip" >> "$0.log"
case "$1" in
deconfig) ip -4 addr flush dev "$interface" ;;
bound) ip -4 addr add "$ip/$mask" valid_lft "$lease" preferred_lft "$lease" dev "$interface" ;;
renew) ip -4 addr change "$ip/$mask" valid_lft "$lease" preferred_lft "$lease" dev "$interface" ;;
esac
exit 0
"""


def test_udhcpc_follows_the_name_and_renews_through_the_master(lab, dnsmasq, tmp_path):
    """busybox udhcpc holds no packet socket while bound, renews with a UDP
    socket bound to the interface by name, and reads the ifindex again at
    each timeout: once the lease moved, it renews through the master with
    nothing restarted.  It ignores T1: it renews at half the lease (60 s)."""
    log, script, pidfile = dnsmasq, tmp_path / "udhcpc.sh", tmp_path / "udhcpc.pid"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)

    def reasons() -> list:
        done = tmp_path / "udhcpc.sh.log"
        return done.read_text().split("\n") if done.exists() else []

    # -b: into the background once bound (or after -t tries)
    lab.run("guest", "busybox", "udhcpc", "-i", "ens10", "-s", str(script), "-p", str(pidfile),
            "-b", "-t", "10", timeout=40)
    try:
        bound = wait_for(lambda: next((r for r in reasons() if r.startswith("bound ens10 ")), None),
                         20, "udhcpc's lease")
        ip = bound.split()[2]
        with Netfo(lab) as n:
            valid = addrs(lab, "ens10")[ip][0]
            assert valid != FOREVER and valid <= LEASE, valid
            assert "still listens on ens10nsby" not in n.read_log()     # no packet socket
            seen = len(log.events())
            wait_for(lambda: f"renew ens10 {ip}" in reasons(), LEASE / 2 + 15, "udhcpc's renewal")
            assert ("DHCPACK", ip, MAC) in log.events()[seen:], log.events()[seen:]
            refreshed = addrs(lab, "ens10")[ip][0]
            assert refreshed >= LEASE - 3, refreshed
        back = addrs(lab, "ens10")
        assert ip in back and 0 < back[ip][0] <= refreshed, back
    finally:
        try:
            os.kill(int(pidfile.read_text()), signal.SIGTERM)   # exits without deconfig
        except (OSError, ValueError):
            pass
