"""The loop follows the slaves' carrier by itself (set_miimon, link events):
it holds a slave that lost its carrier, and while no slave can transmit it
takes one whose carrier is back at once, without the control plane. And
after a switch it takes the old slave's unicast for as long as the network
has not learnt the move.

Each case runs a script in an anonymous network namespace (`unshare`), with
sysfs mounted afresh for it (the loop reads the carrier there) or, in the
last case, left as the parent's.
"""
import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, os, select, socket, subprocess, sys, threading, time
from netfo import _fastpath as fp
from netfo.kernel import packet, tap

def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True)

def wait_for(cond, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.001)
    return cond()

def carrier(dev):
    p = subprocess.run(["ip", "-j", "link", "show", "dev", dev], capture_output=True, text=True)
    return "LOWER_UP" in json.loads(p.stdout)[0]["flags"]

case = sys.argv[1]
sh("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")   # no frames of the stack's own
sh("ip", "link", "set", "lo", "up")
for a, b in (("v0", "v1"), ("w0", "w1")):
    sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
    sh("ip", "link", "set", a, "up")
    sh("ip", "link", "set", b, "up")
tfd = tap.open_tap("t0")
tap.set_carrier(tfd, True)
sh("ip", "link", "set", "t0", "up")
assert wait_for(lambda: carrier("v0") and carrier("w0")), "veths without carrier"

dp = fp.Datapath(tfd)
if case == "netlink":
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
    nl.bind((0, 1))                             # RTMGRP_LINK
    dp.watch_links(nl.detach())
else:
    dp.set_miimon(0 if case == "send" else 10)
dp.set_slave(fp.PRIMARY, packet.open_slave("v0"), socket.if_nametoindex("v0"))
dp.set_slave(fp.STANDBY, packet.open_slave("w0"), socket.if_nametoindex("w0"))
if case != "send":
    dp.set_ready(fp.PRIMARY, True)
    dp.set_ready(fp.STANDBY, True)
loop = threading.Thread(target=dp.run, daemon=True)
loop.start()
time.sleep(0.05)        # the loop's first carrier reads: what later losses count from
ev = dp.event_fd()
out = {}
m = lambda key: dp.stats()["master"][key]

def transmitted_on(peer):
    # a frame the master sends leaves through the active slave
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B5))
    s.bind((peer, 0))
    s.settimeout(1)
    frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + case.encode().ljust(46, b".")
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as master:
        master.bind(("t0", 0))
        master.send(frame)
    try:
        while True:
            if s.recv(2048) == frame:
                return True
    except socket.timeout:
        return False
    finally:
        s.close()

def unicast(peer, dev, tag):
    # a frame for dev's own MAC (PACKET_HOST there) from its veth peer
    with open(f"/sys/class/net/{dev}/address") as f:
        dst = bytes.fromhex(f.read().strip().replace(":", ""))
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((peer, 0))
        s.send(dst + b"\x02\x00\x00\x00\x00\x02" + b"\x88\xb5" + tag.encode().ljust(46, b"."))

if case == "foreign-sysfs":
    time.sleep(0.2)
    out["holds"] = m("link_holds")
    out["active"] = dp.active()
    out["sent"] = transmitted_on("v1")
elif case == "send":
    # nothing ready yet (the control plane has not spoken): the first
    # frames find the primary's carrier and go out through it
    out["active_before"] = dp.active()
    out["sent"] = transmitted_on("v1")
    out["recoveries"] = m("link_recoveries")
    out["active"] = dp.active()
elif case == "grace":
    master = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B5))
    master.bind(("t0", 0))                      # what the loop delivers to the master
    master.setblocking(False)
    def delivered():
        time.sleep(0.05)
        tags = []
        while True:
            try:
                tags.append(master.recv(2048)[14:].rstrip(b".").decode())
            except BlockingIOError:
                return tags
    dp.set_preferred(fp.STANDBY)
    unicast("w1", "w0", "standby")
    dp.set_preferred(fp.PRIMARY)                # the switch: the network has not learnt it
    time.sleep(0.3)
    unicast("w1", "w0", "old-late")             # still taken: the primary has heard no unicast
    unicast("v1", "v0", "new")                  # the network delivers to the primary now ...
    out["switch"] = delivered()
    unicast("w1", "w0", "old-after")            # ... and the grace is over
    out["after"] = delivered()
    dp.set_preferred(fp.STANDBY)
    dp.set_preferred(fp.PRIMARY)                # a switch the network never follows
    unicast("w1", "w0", "old-soon")
    out["soon"] = delivered()
    time.sleep(1.0)                             # RX_GRACE_NS, the longest
    unicast("w1", "w0", "old-expired")
    out["expired"] = delivered()
    out["policy_drops"] = m("drop_rx_policy")
elif case == "unknown":
    # a link that runs (IFF_RUNNING) in operstate "unknown", as a re-plugged
    # e1000e without carrier is until linkwatch first looks at it: lo stays there
    dp.set_slave(fp.PRIMARY, packet.open_slave("lo"), socket.if_nametoindex("lo"))
    dp.set_preferred(fp.STANDBY)
    dp.set_takeover(fp.PRIMARY)
    time.sleep(0.3)                             # 30 miimon ticks
    out["active"] = dp.active()
    out["recoveries"] = m("link_recoveries")
elif case in ("takeover", "no-takeover"):
    sh("ip", "link", "set", "v1", "down")       # the primary loses its carrier ...
    out["held_primary"] = wait_for(lambda: dp.active() == fp.STANDBY)
    dp.set_ready(fp.PRIMARY, False)             # ... as the control plane saw too
    dp.set_preferred(fp.STANDBY)
    dp.set_takeover(fp.PRIMARY if case == "takeover" else -1)
    sh("ip", "link", "set", "v1", "up")
    out["took"] = wait_for(lambda: dp.active() == fp.PRIMARY, 0.5)
    out["recoveries"] = m("link_recoveries")
    out["sent"] = transmitted_on("v1")
else:
    sh("ip", "link", "set", "v1", "down")       # the primary loses its carrier
    out["held_primary"] = wait_for(lambda: dp.active() == fp.STANDBY)
    sh("ip", "link", "set", "w1", "down")       # ... and the standby
    out["held_both"] = wait_for(lambda: dp.active() == -1)
    out["holds"] = m("link_holds")
    dp.set_carrier(False)                       # as the control plane does after downdelay
    os.read(ev, 8)
    t0 = time.monotonic()
    subprocess.Popen(["ip", "link", "set", "w1", "up"]).wait()
    out["recovered"] = wait_for(lambda: dp.active() == fp.STANDBY)
    out["recover_ms"] = (time.monotonic() - t0) * 1000
    out["master_carrier"] = carrier("t0")      # the loop turned it on, not a control plane
    out["recoveries"] = m("link_recoveries")
    out["told"] = bool(select.select([ev], [], [], 0.5)[0])
    out["sent"] = transmitted_on("w1")
dp.stop()
loop.join(3)
print(json.dumps(out))
"""


def run(case: str, own_sysfs: bool = True) -> dict:
    cmd = [sys.executable, "-c", SCRIPT, case]
    if own_sysfs:
        cmd = ["unshare", "--net", "--mount", "sh", "-c",
               'mount -t sysfs sysfs /sys && exec "$@"', "sh", *cmd]
    else:
        cmd = ["unshare", "--net", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["miimon", "netlink"])
def test_loop_holds_and_recovers_on_carrier(case):
    """miimon: no link events at all, the loop's own carrier reads; netlink:
    the kernel's link events, no carrier reads."""
    got = run(case)
    assert got["held_primary"] and got["held_both"] and got["holds"] == 2, got
    # the standby's carrier returned while nothing could transmit: the loop
    # took it by itself and told the control plane
    assert got["recovered"] and got["recoveries"] == 1 and got["told"], got
    assert got["master_carrier"], got
    assert got["sent"], got
    print(f"{case}: standby transmitting {got['recover_ms']:.1f} ms after `ip link set up`")


@pytest.mark.parametrize("case", ["takeover", "no-takeover"])
def test_loop_takes_the_primary_back_by_itself_only_when_told(case):
    """set_takeover: the primary transmits again from its carrier on while
    the standby carries the traffic, without the control plane (a re-plugged
    VF); without it the control plane's choice stands."""
    got = run(case)
    assert got["held_primary"], got
    want = case == "takeover"
    assert got["took"] == want and got["recoveries"] == int(want) and got["sent"] == want, got


def test_a_link_in_operstate_unknown_is_not_taken():
    """IFF_RUNNING without a known carrier (operstate "unknown") is no
    carrier coming back: the loop leaves such a link to the control plane."""
    got = run("unknown")
    assert got == {"active": 1, "recoveries": 0}, got


def test_send_takes_a_slave_with_carrier_when_none_is_ready():
    """With no carrier reads or link events, the send path itself looks for
    a slave (net_failover checks the carrier per frame)."""
    got = run("send")
    assert got["active_before"] == -1, got
    assert got["sent"] and got["recoveries"] == 1 and got["active"] == 0, got


def test_old_slave_delivers_until_the_new_one_hears_unicast():
    """--rx-policy active after a switch: the guest's unicast from the slave
    that transmitted before is still delivered (the switch in front has not
    learnt the move) until the new slave receives unicast for the guest,
    however long that takes up to RX_GRACE_NS; then it is dropped."""
    got = run("grace")
    assert got["switch"] == ["standby", "old-late", "new"], got
    assert got["after"] == [] and got["soon"] == ["old-soon"] and got["expired"] == [], got
    assert got["policy_drops"] == 2, got


def test_foreign_sysfs_is_no_carrier_loss():
    """A sysfs that shows another namespace's links tells nothing: the
    loop must not hold slaves it cannot read (v0 is not in the parent's)."""
    got = run("foreign-sysfs", own_sysfs=False)
    assert got == {"holds": 0, "active": 0, "sent": True}, got
