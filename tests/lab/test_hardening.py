"""Hardening: the daemon's privileges, restores that fail, names as nft sees them.

- After up, every thread of the daemon has only CAP_NET_ADMIN and
  CAP_NET_RAW (effective, permitted, bounding), nothing inheritable or
  ambient, and no_new_privs; with that it still enslaves a re-plugged VF
  (that then transmits), follows an MTU change, hands over on `netfo
  restart`, and `netfo down` restores the machine exactly.
- A restore step that fails makes `netfo down` exit 1 with one line saying
  what is left, keeps the journal, and a second `netfo down` once the cause
  is fixed finishes the job (the daemon's own down, and down after a crash).
- A slave's name never reaches nft's syntax: its chain is in_IFINDEX.
"""
from __future__ import annotations

import json
import os
import sys
import time

import pytest

from netfo import spawn
from netfo.lab import PEER_IP4
from support.harness import REPO, Netfo
from support.state import diff, snapshot
from support.traffic import ping

NET_ADMIN_RAW = (1 << 12) | (1 << 13)


def cli(lab, *argv, timeout=60):
    return lab.run("guest", *spawn.netfo(*argv), check=False, timeout=timeout)


def journal_path(lab) -> str:
    ino = os.stat(f"/var/run/netns/{lab.guest}").st_ino
    return f"/run/netfo/net{ino}-ens10.journal"


def caps_of(pid: int) -> list:
    """Each thread's capability sets and no_new_privs, from /proc."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        out.append({k: fields[k].strip() for k in
                    ("Name", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")})
    return out


def assert_reduced(pid: int) -> None:
    threads = caps_of(pid)
    assert len(threads) >= 2, threads           # the datapath loop and the netlink reader too
    for t in threads:
        assert int(t["CapEff"], 16) == NET_ADMIN_RAW, t
        assert int(t["CapPrm"], 16) == NET_ADMIN_RAW, t
        assert int(t["CapBnd"], 16) == NET_ADMIN_RAW, t
        assert int(t["CapInh"], 16) == 0 and int(t["CapAmb"], 16) == 0, t
        assert t["NoNewPrivs"] == "1", t


def link_mtu(lab, name: str) -> int:
    return json.loads(lab.run("guest", "ip", "-j", "link", "show", name).stdout)[0]["mtu"]


def without_vf(snap: dict) -> dict:
    """A re-plugged VF is a new device: compare everything else."""
    snap["links"] = {k: v for k, v in snap["links"].items() if v["ifname"] != "ens11"}
    snap["addrs"] = {a for a in snap["addrs"] if a[0] != "ens11"}
    snap["sysctls"] = {k: v for k, v in snap["sysctls"].items() if ".ens11." not in k}
    snap["routes"] = {r for r in snap["routes"] if '"dev": "ens11"' not in r}
    return snap


@pytest.fixture(autouse=True)
def no_journal_left(lab):
    """A test that fails half-way must not leave its journal to the next
    lab (whose namespace may get the same inode)."""
    yield
    try:
        os.unlink(journal_path(lab))
    except OSError:
        pass


def test_daemon_keeps_only_net_admin_and_net_raw_and_still_does_its_jobs(lab):
    lab.link("virtio", "up")                    # the standby has carrier
    before = snapshot(lab)
    # probes: a re-plugged VF also gets a probe observer (a packet socket) after the drop
    n = Netfo(lab, "--arp-target", PEER_IP4).start()
    try:
        st = n.status()
        assert_reduced(st["pid"])
        lab.unplug()
        n.wait(lambda s: s["active"] == "standby", what="standby after unplug")
        lab.plug()
        st = n.wait(lambda s: s["active"] == "primary", timeout=10, what="re-plugged VF enslaved")
        sent = n.slave("primary")["stats"]["tx_packets"]
        assert ping(lab, "guest", PEER_IP4, count=5).received == 5
        assert n.slave("primary")["stats"]["tx_packets"] >= sent + 5     # the new VF transmits
        lab.run("guest", "ip", "link", "set", "ens10", "mtu", "1400")
        deadline = time.monotonic() + 5
        while (link_mtu(lab, "ens11"), link_mtu(lab, "ens10nsby")) != (1400, 1400):
            assert time.monotonic() < deadline, "the slaves did not follow the master's MTU"
            time.sleep(0.05)
        assert ping(lab, "guest", PEER_IP4, count=3, extra=("-s", "1300", "-M", "do")).received == 3
        assert_reduced(st["pid"])
    finally:
        n.stop()
    assert n.proc is None
    assert diff(without_vf(before), without_vf(snapshot(lab))) == []
    assert not os.path.exists(journal_path(lab))


def test_restart_and_down_with_the_reduced_set(lab):
    before = snapshot(lab)
    p = cli(lab, "up", "ens10")
    assert p.returncode == 0, p.stderr
    old = json.loads(cli(lab, "status", "ens10", "--json").stdout)["pid"]
    assert_reduced(old)
    p = cli(lab, "restart", "ens10")            # the fds go over the Unix socket
    assert p.returncode == 0, p.stderr
    new = json.loads(cli(lab, "status", "ens10", "--json").stdout)
    assert new["pid"] != old and new["active"] == "primary"
    assert_reduced(new["pid"])
    assert ping(lab, "guest", PEER_IP4, count=3).received == 3
    p = cli(lab, "down", "ens10")
    assert p.returncode == 0, p.stderr
    assert diff(before, snapshot(lab)) == []


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() < deadline, f"pid {pid} did not exit"
        time.sleep(0.02)


def test_a_failed_restore_by_the_daemon_keeps_the_journal_for_a_second_down(lab):
    lab.run("guest", "ip", "link", "set", "ens10", "mtu", "4000")
    lab.link("virtio", "up")                    # IPv6's routes on a link without carrier
    before = snapshot(lab)                      # depend on its carrier's history
    n = Netfo(lab).start()
    lab.run("guest", "ip", "link", "set", "ens10", "mtu", "1500")     # the slaves follow
    deadline = time.monotonic() + 5
    while link_mtu(lab, "ens10nsby") != 1500:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # XDP on the virtio backend caps the standby's MTU at ~3.5K: 4000 cannot go back
    lab.run("src", sys.executable, f"{REPO}/tests/support/xdp_pass.py", "tap01")
    p = cli(lab, "down", "ens10")
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "not fully restored" in lines[0] and "MTU 4000" in lines[0], lines[0]
    assert "netfo down ens10 again" in lines[0], lines[0]
    assert n.proc.wait(10) == 1                 # the daemon says so too
    n.proc = None
    assert os.path.exists(journal_path(lab))
    with open(journal_path(lab)) as f:
        j = json.load(f)
    assert j["left"] and j["master_deleted"] and not j["moved"]     # only what is left:
    assert [e["name"] for e in j["slaves"].values()] == ["ens10nsby"]   # the VF was restored
    assert diff(before, snapshot(lab)) != []
    lab.run("src", "ip", "link", "set", "dev", "tap01", "xdp", "off")  # the user fixes it
    p = cli(lab, "down", "ens10")
    assert p.returncode == 0 and "restored from its journal" in p.stdout, (p.stdout, p.stderr)
    assert not os.path.exists(journal_path(lab))
    assert diff(before, snapshot(lab)) == []


def test_a_failed_restore_after_a_crash_keeps_the_journal_for_a_second_down(lab):
    before = snapshot(lab)
    n = Netfo(lab).start()
    pid = n.status()["pid"]
    n.proc.kill()
    n.proc.wait()
    n.proc = None
    wait_gone(pid)
    # meanwhile the user deleted the master and made a link of its name
    lab.run("guest", "ip", "link", "del", "ens10")
    lab.run("guest", "ip", "link", "add", "ens10", "type", "veth", "peer", "name", "ens10p")
    p = cli(lab, "down", "ens10")
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "not fully restored" in lines[0] and "back to ens10" in lines[0], lines[0]
    assert os.path.exists(journal_path(lab))
    lab.run("guest", "ip", "link", "del", "ens10")                  # the user fixes it
    p = cli(lab, "down", "ens10")
    assert p.returncode == 0 and "restored from its journal" in p.stdout, (p.stdout, p.stderr)
    assert not os.path.exists(journal_path(lab))
    assert diff(before, snapshot(lab)) == []


def test_slave_names_never_reach_nft_syntax(lab):
    name = 'e"x;y{'                             # a name the kernel accepts
    lab.run("guest", "ip", "link", "set", "ens11", "name", name)
    before = snapshot(lab)
    n = Netfo(lab).start()
    try:
        n.wait(lambda s: s["active"] == "primary", what="the oddly named VF enslaved")
        assert n.slave("primary")["name"] == name
        index = json.loads(lab.run("guest", "ip", "-j", "link", "show", name).stdout)[0]["ifindex"]
        sb = json.loads(lab.run("guest", "ip", "-j", "link", "show", "ens10nsby").stdout)[0]
        rules = json.loads(lab.run("guest", "nft", "-j", "list", "ruleset").stdout)["nftables"]
        chains = {c["chain"]["name"] for c in rules if "chain" in c}
        assert chains == {f"in_{index}", f"in_{sb['ifindex']}"}, chains
        assert ping(lab, "guest", PEER_IP4, count=3).received == 3
    finally:
        n.stop()
    assert diff(before, snapshot(lab)) == []
