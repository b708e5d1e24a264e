"""The loop on real devices: it tells event_fd() when it holds a slave on a
link event, and leaves with OSError(EBADFD) when its TAP is deleted.

Each case runs a script under `unshare --net`: its namespace is anonymous
and goes away with the process, whatever happens to the test.
"""
import errno
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

def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()

def running(dev):                       # /sys is the parent namespace's
    p = subprocess.run(["ip", "-j", "link", "show", "dev", dev], capture_output=True, text=True)
    return json.loads(p.stdout)[0]["operstate"] == "UP"

threads, tap_io = int(sys.argv[1]), int(sys.argv[2])
# no frames of the stack's own (router solicitations, MLD): one that reached
# a slave after the TAP's deletion would end the RX loop with EBADFD too
sh("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
sh("ip", "link", "set", "lo", "up")
sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
sh("ip", "link", "add", "w0", "type", "veth", "peer", "name", "w1")
for dev in ("v0", "v1", "w0", "w1"):
    sh("ip", "link", "set", dev, "up")
tfd = tap.open_tap("t0")
tap.set_carrier(tfd, True)
sh("ip", "link", "set", "t0", "up")
assert wait_for(lambda: running("v0") and running("w0")), "veths not running"

dp = fp.Datapath(tfd, fp.RX_ACTIVE, threads, tap_io)
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE)
nl.bind((0, 1))                                 # RTMGRP_LINK
dp.watch_links(nl.detach())
dp.set_slave(fp.PRIMARY, packet.open_slave("v0"), socket.if_nametoindex("v0"))
dp.set_slave(fp.STANDBY, packet.open_slave("w0"), socket.if_nametoindex("w0"))
dp.set_ready(fp.PRIMARY, True)
dp.set_ready(fp.STANDBY, True)

out = {}
def loop(name, fn):
    try:
        out[name] = fn()
    except OSError as e:
        out[name] = ["OSError", e.errno]
fns = {"run": dp.run} if threads == 1 else {"run_tx": dp.run_tx, "run_rx": dp.run_rx}
ts = [threading.Thread(target=loop, args=item, daemon=True) for item in fns.items()]
for t in ts:
    t.start()
time.sleep(0.1)

ev = dp.event_fd()
out["readable_before"] = bool(select.select([ev], [], [], 0.2)[0])
out["active_before"] = dp.active()
sh("ip", "link", "set", "v1", "down")           # v0 loses its carrier
out["readable_after"] = bool(select.select([ev], [], [], 3)[0])
out["count"] = int.from_bytes(os.read(ev, 8), "little") if out["readable_after"] else 0
out["link_holds"] = dp.stats()["master"]["link_holds"]
out["active_after"] = dp.active()

t0 = time.monotonic()                           # loops running: they acknowledge
dp.set_slave(fp.PRIMARY, packet.open_slave("v0"), socket.if_nametoindex("v0"))
out["set_slave_running_s"] = time.monotonic() - t0

sh("ip", "link", "del", "t0")                   # the TAP is gone
ts[0].join(3)
out["tx_alive_after_del"] = ts[0].is_alive()
dp.stop()
for t in ts:
    t.join(3)
out["alive"] = [t.is_alive() for t in ts]
out["loops"] = {k: out.pop(k, "running") for k in fns}
t0 = time.monotonic()                           # no loop running: no wait at all
dp.set_slave(fp.PRIMARY, -1)
out["set_slave_stopped_s"] = time.monotonic() - t0
print(json.dumps(out))
"""


@pytest.mark.parametrize("tap_io", ["syscalls", "uring"])
@pytest.mark.parametrize("threads", [1, 2])
def test_loop_events_and_tap_gone(threads, tap_io):
    """Also with --tap-io uring: the multishot read ends with EBADFD."""
    from netfo import _fastpath as fp
    if tap_io == "uring" and fp.uring_problem():
        pytest.skip(fp.uring_problem())
    mode = fp.TAP_IO_URING if tap_io == "uring" else fp.TAP_IO_SYSCALLS
    p = subprocess.run(["unshare", "--net", sys.executable, "-c", SCRIPT, str(threads), str(mode)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert (got["readable_before"], got["active_before"]) == (False, 0), got
    # the loop held the primary on the link event and told event_fd
    assert got["readable_after"] and got["count"] >= 1 and got["link_holds"] >= 1, got
    assert got["active_after"] == 1, got
    assert got["set_slave_running_s"] < 0.5, got
    # the loop reading the TAP left with EBADFD at once; the others at stop()
    assert not got["tx_alive_after_del"] and got["alive"] == [False] * threads, got
    first = "run" if threads == 1 else "run_tx"
    assert got["loops"][first] == ["OSError", errno.EBADFD], got
    if threads == 2:
        assert got["loops"]["run_rx"] is None, got
    assert got["set_slave_stopped_s"] < 0.5, got     # closing a packet socket: ~10 ms
