"""netfo as a service: a crash or a planned restart keeps the master.

kill -9 then `netfo up` adopts the master (same ifindex, addresses and
routes untouched, slaves re-silenced, an open TCP connection goes on);
`netfo restart` hands it to a new daemon with the TAP's carrier never
dropping; what is not netfo's is refused with one line and left alone; a
kill -9 or SIGTERM anywhere in `up` ends adopted or restored.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from netfo import spawn
from netfo.lab import GUEST_IP4, PEER_IP4
from support.state import diff, snapshot
from support.traffic import Stream, ping

ECHO_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
while True:
    d = c.recv(100)
    if not d:
        break
    c.sendall(d)
"""
# One connection: an echo now, then one per line read from stdin.
ECHO_CLIENT = """
import itertools, socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
for word in itertools.chain(["first"], (l.strip() for l in sys.stdin)):
    c.sendall(word.encode())
    print(c.recv(100).decode(), flush=True)
"""


def cli(lab, *argv, timeout=60):
    return lab.run("guest", *spawn.netfo(*argv), check=False, timeout=timeout)


def status(lab) -> dict:
    p = cli(lab, "status", "ens10", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def journal_path(lab) -> str:
    ino = os.stat(f"/var/run/netns/{lab.guest}").st_ino
    return f"/run/netfo/net{ino}-ens10.journal"


def master(lab) -> dict:
    return json.loads(lab.run("guest", "ip", "-j", "-d", "link", "show", "ens10").stdout)[0]


def addrs_routes(lab) -> tuple:
    a = lab.run("guest", "ip", "-j", "addr", "show", "dev", "ens10").stdout
    r4 = lab.run("guest", "ip", "-j", "-4", "route", "show", "dev", "ens10").stdout
    r6 = lab.run("guest", "ip", "-j", "-6", "route", "show", "dev", "ens10").stdout
    keep = [(i["local"], i["prefixlen"]) for i in json.loads(a)[0]["addr_info"]]
    return sorted(keep), sorted(map(json.dumps, json.loads(r4) + json.loads(r6)))


class Monitor:
    """`ip monitor` in the guest: what the kernel announced meanwhile."""

    def __init__(self, lab, *objects):
        self.proc = lab.popen("guest", "ip", "-t", "monitor", *objects,
                              stdout=subprocess.PIPE, text=True)
        time.sleep(0.2)

    def lines(self) -> list:
        self.proc.terminate()
        return self.proc.communicate(timeout=5)[0].splitlines()


def up(lab) -> None:
    p = cli(lab, "up", "ens10")
    assert p.returncode == 0, p.stderr


def kill9(lab) -> int:
    pid = status(lab)["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.01)
    return pid


def test_kill9_then_up_adopts_the_master_and_tcp_goes_on(lab):
    server = lab.popen("peer", sys.executable, "-c", ECHO_SERVER, PEER_IP4, "5301",
                       stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        up(lab)
        index, before = master(lab)["ifindex"], addrs_routes(lab)
        client = lab.popen("guest", sys.executable, "-c", ECHO_CLIENT, PEER_IP4, "5301",
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "first"
        mon = Monitor(lab, "address", "route")
        old = kill9(lab)
        t0 = time.monotonic()
        up(lab)
        # traffic flows again: the first ping answered after the crash
        while ping(lab, "guest", PEER_IP4, count=1, interval=0.01).received != 1:
            assert time.monotonic() - t0 < 10, "no traffic 10 s after the adopting up"
        outage = time.monotonic() - t0
        st = status(lab)
        assert st["adopted"] and st["pid"] != old and st["active"] == "primary"
        assert master(lab)["ifindex"] == index and addrs_routes(lab) == before
        deleted = [l for l in mon.lines() if "Deleted" in l]
        assert not deleted, deleted
        client.stdin.write("second\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "second"     # the same connection
        client.stdin.close()
        client.wait(10)
        # the slaves are silenced again: one answer per ping
        r = ping(lab, "peer", GUEST_IP4, count=20, interval=0.02)
        assert r.received == 20 and r.duplicates == 0
        nft = lab.run("guest", "nft", "list", "table", "netdev", "netfo_ens10").stdout
        assert "ens11" in nft and "ens10nsby" in nft
        print(f"outage after kill -9 (adopting up to the first answered ping): {outage * 1000:.0f} ms")
    finally:
        server.kill()
        cli(lab, "down", "ens10")


@pytest.mark.parametrize("spoil", ["alias", "netns", "standby-mac"])
def test_up_refuses_a_master_that_is_not_netfos(lab, spoil):
    up(lab)
    kill9(lab)
    path = journal_path(lab)
    if spoil == "alias":
        lab.run("guest", "ip", "link", "set", "ens10", "alias", "someone-elses")
        undo = ["ip", "link", "set", "ens10", "alias", f"netfo:{json.load(open(path))['id']}"]
    elif spoil == "netns":
        j = json.load(open(path))
        good, j["netns"] = j["netns"], "cookie:1"
        with open(path, "w") as f:
            json.dump(j, f)
    else:
        lab.run("guest", "ip", "link", "set", "ens10nsby", "address", "52:54:00:00:99:99")
        undo = ["ip", "link", "set", "ens10nsby", "address", "52:54:00:00:12:53"]
    before = snapshot(lab)
    p = cli(lab, "up", "ens10")
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "nothing touched" in lines[0], lines
    assert diff(before, snapshot(lab)) == [] and os.path.exists(path)
    if spoil == "netns":
        j["netns"] = good
        with open(path, "w") as f:
            json.dump(j, f)
    else:
        lab.run("guest", *undo)
    up(lab)
    assert status(lab)["adopted"]
    assert cli(lab, "down", "ens10").returncode == 0


def test_kill9_anywhere_in_up_ends_adopted_or_restored(lab):
    before = snapshot(lab)
    # from before the rename to after the master is ready (~0.2-0.6 s here)
    for base in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.6, 1.0):
        delay = base + random.random() * 0.05       # a different point each run
        proc = lab.popen("guest", *spawn.netfo("up", "ens10", "--foreground"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        up(lab)
        st = status(lab)
        assert st["active"] == "primary", (delay, st)
        r = ping(lab, "guest", PEER_IP4, count=3, interval=0.05)
        assert r.received == 3 and r.duplicates == 0, delay
        assert cli(lab, "down", "ens10").returncode == 0
        assert diff(before, snapshot(lab)) == [], delay
        assert not os.path.exists(journal_path(lab))


def test_sigterm_during_up_is_down(lab):
    before = snapshot(lab)
    for base in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4):
        delay = base + random.random() * 0.05
        proc = lab.popen("guest", *spawn.netfo("up", "ens10", "--foreground"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert diff(before, snapshot(lab)) == [], (delay, proc.stderr.read())
        assert not os.path.exists(journal_path(lab))


def test_restart_keeps_the_master_without_a_flap(lab):
    up(lab)
    old, index = status(lab)["pid"], master(lab)["ifindex"]
    for ns, dst in (("guest", PEER_IP4), ("peer", GUEST_IP4)):   # neighbours resolved first:
        assert ping(lab, ns, dst, count=3).received == 3        # a stream's start loses none
    mon = Monitor(lab, "link", "address", "route")
    out = Stream(lab, "guest", "peer", PEER_IP4, 5302, rate=10000, seconds=3)
    back = Stream(lab, "peer", "guest", GUEST_IP4, 5303, rate=10000, seconds=3)
    time.sleep(1.2)
    p = cli(lab, "restart", "ens10")
    assert p.returncode == 0, p.stderr
    lost = [out.result()["lost"], back.result()["lost"]]
    lines = mon.lines()
    # the master's only link changes are its queue growing and shrinking back
    events = [l for l in lines if "Deleted" in l or ("ens10:" in l and "LOWER_UP" not in l)]
    st = status(lab)
    assert st["pid"] != old and st["active"] == "primary"
    assert master(lab)["ifindex"] == index
    assert not events, events                   # the carrier never dropped, nothing deleted
    # restart returns once the new daemon serves; the old one exits just after
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{old}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{old}"), "the old daemon still runs 5 s after the handover"
    print(f"frames lost in a planned restart at 10,000/s each way: "
          f"guest→peer {lost[0]}, peer→guest {lost[1]}")
    assert max(lost) <= 10, lost
    assert cli(lab, "down", "ens10").returncode == 0


def test_restart_without_a_daemon_says_so(lab):
    p = cli(lab, "restart", "ens10")
    assert p.returncode == 1
    assert p.stderr.strip() == "netfo: netfo is not running on ens10 in this network namespace"


def _tap_fd_of(pid: int) -> int:
    """A copy of the daemon's TAP fd (pidfd_getfd), as systemd's fd store holds it."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    n = next(int(fd) for fd in os.listdir(f"/proc/{pid}/fd")
             if os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/net/tun")
    pidfd = os.pidfd_open(pid)
    try:
        fd = libc.syscall(438, pidfd, n, 0)          # SYS_pidfd_getfd
        assert fd >= 0, os.strerror(ctypes.get_errno())
        return fd
    finally:
        os.close(pidfd)


def test_the_tap_fd_from_systemds_store_keeps_the_carrier_over_a_crash(lab):
    up(lab)
    index = master(lab)["ifindex"]
    held = _tap_fd_of(status(lab)["pid"])
    try:
        mon = Monitor(lab, "link")
        kill9(lab)
        assert "LOWER_UP" in master(lab)["flags"]       # the store's fd keeps it carrying
        # systemd's way (ExecStart=netfo up %i --foreground): the fd as fd 3,
        # LISTEN_FDS and LISTEN_FDNAMES, LISTEN_PID the new daemon's pid
        argv = " ".join(spawn.netfo("up", "ens10", "--foreground"))
        proc = subprocess.Popen(["ip", "netns", "exec", lab.guest, "bash", "-c",
                                 f"exec 3>&{held}; LISTEN_PID=$$ LISTEN_FDS=1 "
                                 f"LISTEN_FDNAMES=tap-ens10 exec {argv}"],
                                pass_fds=(held,), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, cwd=spawn.NEUTRAL_CWD)
        deadline = time.monotonic() + 15
        while cli(lab, "status", "ens10").returncode != 0:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "not ready in 15 s"
            time.sleep(0.05)
        st = status(lab)
        assert st["adopted"] and st["active"] == "primary" and master(lab)["ifindex"] == index
        assert not [l for l in mon.lines() if "ens10:" in l], "the master's link changed"
    finally:
        os.close(held)
        cli(lab, "down", "ens10")
