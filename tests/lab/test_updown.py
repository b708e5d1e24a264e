"""`netfo up` / `down` as a user sees them: restore exactly, fail cleanly."""
import json
import os
import signal
import sys
import time

from netfo import spawn
from netfo.lab import PEER_IP4, PF
from support.harness import REPO, Netfo
from support.state import diff, snapshot
from support.traffic import ping


def netfo_cli(lab, *argv, prefix=()):
    return lab.run("guest", *prefix, *spawn.netfo(*argv), check=False, timeout=60)


def test_down_restores_links_addresses_routes_sysctls(lab):
    before = snapshot(lab)
    n = Netfo(lab).start()
    try:
        assert ping(lab, "guest", PEER_IP4, count=5).received == 5
        assert snapshot(lab) != before          # it did change things
        lab.unplug()                            # and a VF came and went
        lab.plug()
        n.wait(lambda s: s["active"] == "primary", what="new primary")
    finally:
        n.stop()
    assert n.proc is None
    after = snapshot(lab)
    # the re-plugged VF is a new device: compare everything else exactly
    for snap in (before, after):
        snap["links"] = {k: v for k, v in snap["links"].items() if v["ifname"] != "ens11"}
        snap["addrs"] = {a for a in snap["addrs"] if a[0] != "ens11"}
        snap["sysctls"] = {k: v for k, v in snap["sysctls"].items() if ".ens11." not in k}
        snap["routes"] = {r for r in snap["routes"] if '"dev": "ens11"' not in r}
    assert diff(before, after) == []


def test_daemon_mode_up_status_down(lab):
    before = snapshot(lab)
    p = netfo_cli(lab, "up", "ens10")
    assert p.returncode == 0, p.stderr
    assert "ens10 is up" in p.stdout
    st = netfo_cli(lab, "status")
    assert st.returncode == 0 and "transmitting via: primary" in st.stdout
    assert "ens11" in st.stdout and "ens10nsby" in st.stdout
    p = netfo_cli(lab, "down", "ens10")
    assert p.returncode == 0, p.stderr
    assert diff(before, snapshot(lab)) == []
    assert netfo_cli(lab, "status", "ens10").returncode == 1


def assert_fails_cleanly(lab, before, argv, message, prefix=()):
    p = netfo_cli(lab, *argv, prefix=prefix)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert message in lines[0], lines[0]
    assert diff(before, snapshot(lab)) == []
    return lines[0]


def test_errors_are_one_line_and_leave_nothing(lab):
    before = snapshot(lab)
    assert_fails_cleanly(lab, before, ["up", "ens99"], "no interface named ens99")
    assert_fails_cleanly(lab, before, ["up", "ens10abcdefghij"], "too long")
    assert_fails_cleanly(lab, before, ["up", "lo"], "not an Ethernet")
    assert_fails_cleanly(lab, before, ["up", "ens10", "--primary", "lo"], "--primary lo has MAC")
    assert_fails_cleanly(lab, before, ["up", "ens10"], "needs root",
                         prefix=("setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"))
    assert_fails_cleanly(lab, before, ["up", "ens10"], "/dev/net/tun is missing",
                         prefix=("unshare", "-m", "sh", "-c",
                                 'mount -t tmpfs none /dev/net && exec "$0" "$@"'))
    assert_fails_cleanly(lab, before, ["down", "ens10"], "not running on ens10")
    assert_fails_cleanly(lab, before, ["status", "ens10"], "not running on ens10")


def test_vf_that_cannot_take_the_mtu_is_refused(lab):
    lab.run("src", sys.executable, f"{REPO}/tests/support/xdp_pass.py", PF)   # ens11 max MTU ~3.5K
    lab.run("guest", "ip", "link", "set", "ens10", "mtu", "4000")
    before = snapshot(lab)
    assert_fails_cleanly(lab, before, ["up", "ens10"], "cannot take MTU 4000")


def test_second_up_and_slaves_are_refused_while_running(lab, netfo):
    before = snapshot(lab)
    assert_fails_cleanly(lab, before, ["up", "ens10"], "already running on ens10")
    assert_fails_cleanly(lab, before, ["up", "ens10nsby"], "already in the failover group of ens10")
    assert_fails_cleanly(lab, before, ["up", "ens11"], "already in the failover group of ens10")
    assert netfo.status()["active"] == "primary"


def test_one_daemon_per_namespace(lab):
    """Two guests run `netfo up ens10` at once; status/down reach their own."""
    from netfo.lab import Lab
    from support.harness import unique_prefix
    with Lab(unique_prefix(), log=lambda *_: None) as other:
        a, b = Netfo(lab).start(), Netfo(other).start()
        try:
            assert a.status()["pid"] != b.status()["pid"]
            lab.link("virtio", "up")
            lab.unplug()
            a.wait(lambda s: s["active"] == "standby", what="lab A on standby")
            assert b.status()["active"] == "primary"          # B did not notice A's unplug
            assert netfo_cli(other, "down", "ens10").returncode == 0
            assert netfo_cli(other, "status", "ens10").returncode == 1
            assert a.status()["slaves"][0]["role"] == "standby"   # A still running
        finally:
            a.stop()
            b.stop()


def test_down_after_the_daemon_died_restores_from_the_journal(lab):
    before = snapshot(lab)
    n = Netfo(lab).start()
    n.proc.kill()                       # SIGKILL: no chance to clean up
    n.proc.wait()
    n.proc = None
    assert "ens10nsby" in lab.run("guest", "ip", "link").stdout      # left behind
    p = netfo_cli(lab, "up", "ens10")                               # adopts what was left
    assert p.returncode == 0, p.stderr
    st = json.loads(netfo_cli(lab, "status", "ens10", "--json").stdout)
    assert st["adopted"]
    os.kill(st["pid"], signal.SIGKILL)                              # and dies again
    while os.path.exists(f"/proc/{st['pid']}"):
        time.sleep(0.01)
    p = netfo_cli(lab, "down", "ens10")
    assert p.returncode == 0 and "restored from its journal" in p.stdout, p.stderr
    assert diff(before, snapshot(lab)) == []
    assert Netfo(lab).start().stop() is None                          # usable again
