"""systemd-networkd next to netfo, with the recipe of contrib/systemd-networkd.

Real networkd (systemd 252 on Debian 12) configures the guest's NIC by MAC
with DHCP from a real dnsmasq on the peer; then `netfo up`, a VF unplug and
re-plug, and `netfo down`: networkd must manage the master only (DHCP
address, routes), report the standby and the primary unmanaged, and take the
NIC back after `down`. The lab's VF and virtio NIC are both veths, which the
recipe does not care about: it tells them apart by name (see its comments).
"""
import glob
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from netfo.lab import GUEST_IP4, MAC, PEER_IP4, VF_IF, VIRTIO_IF

from support.harness import REPO, Netfo
from support.dnsmasq import Dnsmasq, wait_for
from support.networkd import Networkd, missing
from support.traffic import ping

STANDBY = VIRTIO_IF + "nsby"
RECIPE = os.path.join(REPO, "contrib", "systemd-networkd")
NETPLAN = os.path.join(REPO, "contrib", "netplan")
RECIPE_MAC, RECIPE_IF = "52:54:00:00:12:53", "ens10"

CONFIGURES = ("/10-netfo-ens10.network", f"/10-netplan-{VIRTIO_IF}.network")
pytestmark = pytest.mark.skipif(bool(missing()), reason=f"needs {', '.join(missing())}")


def for_lab(text: str) -> str:
    """A recipe file with the lab's MAC and NIC name put in: the only edit an
    operator makes (today the lab's values are the recipe's own)."""
    return (text.replace(RECIPE_MAC, MAC).replace(f"Name={RECIPE_IF}\n", f"Name={VIRTIO_IF}\n")
            .replace(f" {RECIPE_IF}:\n", f" {VIRTIO_IF}:\n").replace(f"name: {RECIPE_IF}\n", f"name: {VIRTIO_IF}\n"))


def recipe_for_lab() -> dict:
    """contrib/systemd-networkd, for the lab."""
    files = {}
    for path in sorted(glob.glob(os.path.join(RECIPE, "*.network"))):
        with open(path) as f:
            files[os.path.basename(path)] = for_lab(f.read())
    assert len(files) == 2, files
    return files


def netplan_for_lab() -> dict:
    """contrib/netplan rendered by the real `netplan generate`, plus the
    networkd recipe's slaves file (netplan cannot say "unmanaged")."""
    root = tempfile.mkdtemp(prefix="netplan-")
    try:
        os.makedirs(os.path.join(root, "etc", "netplan"))
        for path in glob.glob(os.path.join(NETPLAN, "*.yaml")):
            dst = os.path.join(root, "etc", "netplan", os.path.basename(path))
            with open(path) as f, open(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o600), "w") as g:
                g.write(for_lab(f.read()))
        subprocess.run(["netplan", "generate", "--root-dir", root], check=True,
                       capture_output=True, timeout=60)
        files = {}
        for path in glob.glob(os.path.join(root, "run", "systemd", "network", "*")):
            with open(path) as f:
                files[os.path.basename(path)] = f.read()
    finally:
        shutil.rmtree(root)
    assert list(files) == [f"10-netplan-{VIRTIO_IF}.network"], files
    slaves = recipe_for_lab()
    files.update({k: v for k, v in slaves.items() if "slaves" in k})
    return files


# What many images ship (systemd's 89-ethernet.network.example, mkosi, Arch):
# DHCP on every Ethernet link. The recipe's second file keeps the slaves out of it.
CATCH_ALL = "[Match]\nType=ether\n\n[Network]\nDHCP=yes\n"


def addrs(lab, ifname: str) -> list[dict]:
    p = lab.run("guest", "ip", "-j", "addr", "show", "dev", ifname)
    return json.loads(p.stdout)[0].get("addr_info", [])


def leased(lab, ifname: str):
    """GUEST_IP4 on ifname with a finite lifetime (a DHCP lease), else None."""
    return next((a for a in addrs(lab, ifname) if a.get("local") == GUEST_IP4
                 and a.get("valid_life_time", 0) < 0xFFFFFFFF), None)


def default_route(lab) -> dict | None:
    p = lab.run("guest", "ip", "-j", "-4", "route", "show", "default")
    return next(iter(json.loads(p.stdout)), None)


def managed_as(nd: Networkd, want: dict) -> dict | bool:
    """networkctl's links when each named link is in the wanted
    AdministrativeState (and configured ones by the recipe's first file)."""
    links = nd.links()
    for name, state in want.items():
        link = links.get(name)
        if link is None or link.get("AdministrativeState") != state:
            return False
        if state == "configured" and not link.get("NetworkFile", "").endswith(CONFIGURES):
            return False
    return links


def assert_master_only(lab, nd: Networkd, dhcp: Dnsmasq, acks_before: int) -> dict:
    """networkd configures the master (the TAP) and nothing else; its own
    DHCP client on the master got a lease through netfo."""
    links = wait_for(lambda: managed_as(nd, {VIRTIO_IF: "configured", STANDBY: "unmanaged",
                                             VF_IF: "unmanaged"}), 20,
                     f"networkd: {VIRTIO_IF} configured, {STANDBY} and {VF_IF} unmanaged")
    assert links[VIRTIO_IF]["Kind"] == "tun"
    assert links[STANDBY]["Driver"] == links[VF_IF]["Driver"] == "veth"
    wait_for(lambda: dhcp.acks(GUEST_IP4) > acks_before, 20, "a DHCPACK for the master")
    wait_for(lambda: leased(lab, VIRTIO_IF), 10, f"the leased {GUEST_IP4} on the master")
    route = wait_for(lambda: default_route(lab), 10, "a default route")
    assert (route["dev"], route["gateway"], route["protocol"]) == (VIRTIO_IF, PEER_IP4, "dhcp")
    # The slaves: no address of any family (not even a link-local), no route.
    for slave in (STANDBY, VF_IF):
        assert addrs(lab, slave) == [], (slave, addrs(lab, slave))
        assert lab.run("guest", "ip", "-j", "route", "show", "dev", slave).stdout.strip() in ("", "[]"), slave
    # networkd knows the master's address as its own lease, not a foreign one.
    sources = {a.get("ConfigSource") for a in nd.links()[VIRTIO_IF].get("Addresses", [])
               if a.get("Family") == 2}
    assert sources == {"DHCPv4"}, sources
    return links


def assert_pings(lab, count: int = 20) -> None:
    for ns, dst in (("guest", PEER_IP4), ("peer", GUEST_IP4)):
        r = ping(lab, ns, dst, count=count)
        assert (r.received, r.duplicates) == (count, 0), (ns, dst, r)


@pytest.mark.parametrize("recipe", ["networkd", "netplan"])
def test_networkd_manages_the_master_only_across_unplug_and_down(lab, recipe):
    if recipe == "netplan" and not shutil.which("netplan"):
        pytest.skip("needs netplan (apt netplan.io)")
    files = recipe_for_lab() if recipe == "networkd" else netplan_for_lab()
    lab.link("virtio", "up")                 # the NIC has carrier, as in a VM
    # The lab configures ens10 by hand; here networkd does it, from DHCP.
    lab.run("guest", "ip", "addr", "flush", "dev", VIRTIO_IF, "scope", "global")
    lab.run("guest", "ip", "route", "flush", "dev", VIRTIO_IF)
    dhcp = Dnsmasq(lab, host=(MAC, GUEST_IP4))
    nd = None
    netfo = Netfo(lab)
    try:
        nd = Networkd(lab, {**files, "99-ethernet.network": CATCH_ALL})
        # Before netfo: the NIC is networkd's (DHCP), the VF is not.
        wait_for(lambda: managed_as(nd, {VIRTIO_IF: "configured", VF_IF: "unmanaged"}), 20,
                 f"networkd: {VIRTIO_IF} configured, {VF_IF} unmanaged")
        wait_for(lambda: leased(lab, VIRTIO_IF), 20, f"a lease on {VIRTIO_IF}")
        nic_index = nd.links()[VIRTIO_IF]["Index"]
        assert ping(lab, "guest", PEER_IP4, count=5).received == 5

        acks = dhcp.acks(GUEST_IP4)
        netfo.start(ready=lambda s: s["active"] == "primary", what="transmitting via the primary")
        links = assert_master_only(lab, nd, dhcp, acks)
        master_index = links[VIRTIO_IF]["Index"]
        assert master_index != nic_index and links[STANDBY]["Index"] == nic_index
        assert_pings(lab)

        # VF unplug and re-plug: the new VF is unmanaged too, the master untouched.
        lab.unplug()
        netfo.wait(lambda s: s["active"] == "standby", what="standby transmitting")
        assert_pings(lab, count=10)
        lab.plug()
        netfo.wait(lambda s: s["active"] == "primary", timeout=10, what="the new VF transmitting")
        links = assert_master_only(lab, nd, dhcp, acks)
        assert links[VIRTIO_IF]["Index"] == master_index
        assert_pings(lab)
        assert leased(lab, VIRTIO_IF)        # still networkd's lease, on the master

        # netfo down: the NIC is ens10 again, and networkd's again (DHCP).
        acks = dhcp.acks(GUEST_IP4)
        netfo.stop()
        wait_for(lambda: managed_as(nd, {VIRTIO_IF: "configured"}), 20,
                 f"networkd: {VIRTIO_IF} configured again")
        links = nd.links()
        assert links[VIRTIO_IF]["Index"] == nic_index and STANDBY not in links
        assert links[VF_IF]["AdministrativeState"] == "unmanaged"
        wait_for(lambda: dhcp.acks(GUEST_IP4) > acks, 20, f"a DHCPACK for {VIRTIO_IF}")
        wait_for(lambda: leased(lab, VIRTIO_IF), 10, f"the lease on {VIRTIO_IF}")
        assert default_route(lab)["dev"] == VIRTIO_IF
        assert ping(lab, "guest", PEER_IP4, count=5).received == 5
    finally:
        netfo.stop()
        if nd:
            nd.stop()
        dhcp.stop()


def test_networkd_started_after_netfo_takes_the_master_only(lab, netfo):
    """The boot order of the units: netfo@ens10 runs before network-pre.target,
    so networkd first meets the trio, the master already there."""
    dhcp = Dnsmasq(lab, host=(MAC, GUEST_IP4))
    nd = None
    try:
        lab.link("virtio", "up")
        nd = Networkd(lab, recipe_for_lab())
        assert_master_only(lab, nd, dhcp, 0)
        assert_pings(lab)
        # networkd took the address netfo moved over as its lease (one IPv4
        # address, with the lease's lifetime); what else netfo moved stays
        # (networkd 252 met it as it enumerated the links, and left it).
        assert [a["local"] for a in addrs(lab, VIRTIO_IF) if a["family"] == "inet"] == [GUEST_IP4]
    finally:
        if nd:
            nd.stop()
        dhcp.stop()
