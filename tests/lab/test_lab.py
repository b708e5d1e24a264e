"""Tests of the namespace lab itself (netfo/lab.py). They need root: every
test builds real network namespaces under a unique prefix and removes them."""
from __future__ import annotations

import os
import random
import shutil
import string
import subprocess
import sys
import time

import pytest

from netfo.lab import MAC, PEER_IP4, PEER_IP6, Lab, LabError

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab creates network namespaces: run as root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 `ip` is not installed"),
]

# ICMP echo over a raw socket bound to one device: no dependency on `ping`,
# and a reply arriving on another NIC (e.g. ens11, same MAC) does not count.
PING = r"""
import os, select, socket, struct, sys, time
dst, dev, count, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
v6 = ":" in dst
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                  socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
ident = os.getpid() & 0xffff
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
for seq in range(count):
    pkt = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, seq) + b"netfo-lab-ping!!"
    if not v6:  # the kernel fills in the ICMPv6 checksum itself
        pkt = pkt[:2] + struct.pack("!H", csum(pkt)) + pkt[4:]
    try:
        s.sendto(pkt, (dst, 0))
    except OSError:
        pass
    end = time.monotonic() + interval
    while (left := end - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            break
        data, addr = s.recvfrom(4096)
        if not v6:
            data = data[(data[0] & 15) * 4:]
        typ, _, _, i = struct.unpack("!BBHH", data[:6])
        if addr[0] == dst and typ == (129 if v6 else 0) and i == ident:
            sys.exit(0)
sys.exit(1)
"""


def ping(lab: Lab, dst: str, dev: str = "ens10", count: int = 10, interval: float = 0.3) -> bool:
    """True if any of `count` echo requests from the guest's `dev` is answered."""
    p = lab.run("guest", sys.executable, "-c", PING, dst, dev, str(count), str(interval), check=False)
    return p.returncode == 0


def unique_prefix() -> str:
    return f"t{os.getpid() % 10000}{''.join(random.choices(string.ascii_lowercase, k=3))}"


def ns_exists(name: str) -> bool:
    return os.path.exists(f"/var/run/netns/{name}")


def link(lab: Lab, role: str, name: str) -> dict | None:
    return next((l for l in lab.status()["links"][role] if l["name"] == name), None)


def fdb_port(lab: Lab, role: str) -> str | None:
    """The port the bridge in `role` has learned MAC on, if any."""
    out = lab.run(role, "bridge", "fdb", "show", "br", "enp66s0f0_br").stdout
    return next((l.split()[2] for l in out.splitlines() if l.startswith(MAC)), None)


def wait_for(cond, timeout: float = 3.0) -> bool:
    """Operstate follows carrier via the kernel's linkwatch, so poll a little."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


@pytest.fixture
def lab():
    lb = Lab(unique_prefix(), log=lambda s: None)
    try:
        lb.up()
        yield lb
    finally:
        lb.down()
        assert not lb.exists()


def test_topology(lab: Lab):
    st = lab.status()
    assert all(st["namespaces"].values())
    ens10, ens11 = link(lab, "guest", "ens10"), link(lab, "guest", "ens11")
    assert ens10["mac"] == ens11["mac"] == MAC
    assert ens10["admin_up"] and ens11["admin_up"]
    assert not ens10["carrier"] and ens11["carrier"]          # <link state='down'/>
    tap = link(lab, "src", "tap01")
    assert tap["master"] == "enp66s0f0_br" and not tap["admin_up"]
    for port in ("enp66s0f0", "uplink", "peer0"):
        assert link(lab, "src", port)["master"] == "enp66s0f0_br"
    assert link(lab, "dst", "uplink")["master"] == "enp66s0f0_br"
    assert (st["virtio_backend"], st["vf_far_end"], st["vf_plugged"]) == ("src", "src", True)
    assert "198.51.100.0/24 via 192.168.12.1 dev ens10" in lab.run("guest", "ip", "route").stdout
    assert PEER_IP6 in lab.run("peer", "ip", "-6", "addr").stdout
    assert "tentative" not in lab.run("guest", "ip", "-6", "addr", "show", "dev", "ens10").stdout
    # hypervisors have IPv6 off so they emit nothing
    assert lab.run("src", "sysctl", "-n", "net.ipv6.conf.tap01.disable_ipv6").stdout.strip() == "1"


def test_virtio_link_toggles_carrier_and_traffic(lab: Lab):
    assert not ping(lab, PEER_IP4, count=3, interval=0.2)  # no carrier on ens10
    assert lab.link("virtio", "up") >= 0
    assert link(lab, "guest", "ens10")["carrier"]
    assert ping(lab, PEER_IP4) and ping(lab, PEER_IP6)
    assert fdb_port(lab, "src") in ("tap01", "enp66s0f0")   # both NICs share the MAC
    lab.link("virtio", "down")
    assert not link(lab, "guest", "ens10")["carrier"]
    assert wait_for(lambda: link(lab, "guest", "ens10")["operstate"] == "DOWN")
    assert not ping(lab, PEER_IP4, count=3, interval=0.2)


def test_vf_link_toggles_carrier(lab: Lab):
    lab.link("vf", "down")
    assert not link(lab, "guest", "ens11")["carrier"]
    lab.link("vf", "up")
    assert link(lab, "guest", "ens11")["carrier"]
    with pytest.raises(LabError):
        lab.link("vf", "sideways")


def test_unplug_then_plug_gives_new_ifindex(lab: Lab):
    old = link(lab, "guest", "ens11")["ifindex"]
    lab.unplug()
    st = lab.status()
    assert not st["vf_plugged"] and st["vf_far_end"] is None
    assert link(lab, "src", "enp66s0f0") is None              # the pair is gone
    with pytest.raises(LabError):
        lab.unplug()
    lab.vf_mac_zero()                                          # no VF: a no-op
    lab.fdb_del()                                              # nothing there: no error
    lab.plug()
    new = link(lab, "guest", "ens11")
    assert new["ifindex"] != old and new["mac"] == MAC
    assert not new["admin_up"]                                 # hot-plugged NICs start down
    far = link(lab, "src", "enp66s0f0")
    assert far["admin_up"] and far["master"] == "enp66s0f0_br"
    with pytest.raises(LabError):
        lab.plug()


def test_move_virtio_keeps_admin_state(lab: Lab):
    lab.link("virtio", "up")
    lab.move_virtio("dst")
    tap = link(lab, "dst", "tap01")
    assert tap["admin_up"] and tap["master"] == "enp66s0f0_br"
    assert link(lab, "src", "tap01") is None
    assert link(lab, "guest", "ens10")["carrier"]
    assert ping(lab, PEER_IP4)                                 # across the uplink
    lab.move_virtio("dst")                                     # already there: no-op
    lab.link("virtio", "down")
    lab.move_virtio("src")
    assert not link(lab, "src", "tap01")["admin_up"]


def test_migrate_document_order(lab: Lab):
    steps = lab.migrate()
    assert [d.split(": ", 1)[1].split()[:2] for d, _ in steps] == [
        ["virsh", "domif-setlink"], ["bridge", "fdb"], ["virsh", "detach-device"],
        ["ip", "link"], ["virsh", "migrate"], ["virsh", "attach-device"], ["virsh", "domif-setlink"]]
    assert steps[0][0].endswith(" up") and steps[-1][0].endswith(" down")
    assert all(isinstance(t, float) and t >= 0 for _, t in steps)
    # A fresh object (as a later CLI process would have) derives the same state.
    again = Lab(lab.prefix, log=lambda s: None)
    st = again.status()
    assert (st["virtio_backend"], st["vf_far_end"], st["vf_plugged"]) == ("dst", "dst", True)
    assert link(again, "src", "tap01") is None and link(again, "src", "enp66s0f0") is None
    assert not link(again, "dst", "tap01")["admin_up"]
    assert link(again, "dst", "enp66s0f0")["master"] == "enp66s0f0_br"
    assert link(again, "guest", "ens11")["mac"] == MAC
    # Virtio up again: guest -> dst bridge -> uplink -> src bridge -> peer.
    again.link("virtio", "up")
    assert ping(again, PEER_IP4) and ping(again, PEER_IP6)
    assert fdb_port(again, "src") == "uplink" and fdb_port(again, "dst") == "tap01"
    # Migrating again goes back to the source.
    again.link("virtio", "down")
    again.run("guest", "ip", "link", "set", "ens11", "up")
    again.migrate()
    st = again.status()
    assert (st["virtio_backend"], st["vf_far_end"]) == ("src", "src")


def test_two_labs_side_by_side():
    a, b = Lab(unique_prefix(), log=lambda s: None), Lab(unique_prefix(), log=lambda s: None)
    try:
        a.up()
        b.up()
        assert a.exists() and b.exists()
        a.link("virtio", "up")
        b.link("virtio", "up")
        assert ping(a, PEER_IP4) and ping(b, PEER_IP4)
        a.down()
        assert not any(ns_exists(n) for n in a.namespaces.values())
        assert all(ns_exists(n) for n in b.namespaces.values())
        a.down()                                               # twice is fine
    finally:
        a.down()
        b.down()
    assert not a.exists() and not b.exists()


def test_up_refuses_existing_namespace():
    lb = Lab(unique_prefix(), log=lambda s: None)
    subprocess.run(["ip", "netns", "add", lb.guest], check=True)
    try:
        with pytest.raises(LabError, match="already exists"):
            lb.up()
        assert ns_exists(lb.guest)                             # not ours: untouched
        assert not any(ns_exists(n) for n in (lb.src, lb.dst, lb.peer))
    finally:
        subprocess.run(["ip", "netns", "del", lb.guest], check=False)
    assert not lb.exists()


def test_failure_midway_removes_everything(monkeypatch):
    lb = Lab(unique_prefix(), log=lambda s: None)
    real_ip = lb._ip

    def failing_ip(role, *args, **kw):
        if "uplink" in args:
            raise LabError("simulated failure")
        return real_ip(role, *args, **kw)
    monkeypatch.setattr(lb, "_ip", failing_ip)
    try:
        with pytest.raises(LabError, match="simulated"):
            lb.up()
        assert not lb.exists()
    finally:
        lb.down()


def test_context_manager_and_down_kills_processes():
    lb = Lab(unique_prefix(), log=lambda s: None)
    with pytest.raises(RuntimeError):
        with lb:
            proc = lb.popen("guest", "sleep", "300")
            assert wait_for(lambda: lb.run("guest", "true").returncode == 0)
            raise RuntimeError("boom")
    assert proc.wait(timeout=5) is not None
    assert not lb.exists()


@pytest.mark.skipif(shutil.which("ethtool") is None, reason="ethtool is not installed")
def test_wire_like_turns_peer_offloads_off():
    with Lab(unique_prefix(), wire_like=True, log=lambda s: None) as lb:
        out = lb.run("peer", "ethtool", "-k", "eth0").stdout
        assert "tcp-segmentation-offload: off" in out
        assert "generic-receive-offload: off" in out
        assert "tcp-segmentation-offload: on" in lb.run("guest", "ethtool", "-k", "ens10").stdout
