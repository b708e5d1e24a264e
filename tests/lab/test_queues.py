"""--queues N: N TAP queues and N packet sockets per slave in a fanout
group, one loop each.

Many TCP flows at once cross both ways, byte for byte, and every queue
forwards some of them in each direction (its own counters move); a
`netfo restart` to another N (more, fewer) keeps the master and an open
connection; a bad N is refused in one line with nothing changed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from netfo.lab import GUEST_IP4, PEER_IP4
from support.state import diff, snapshot
from support.traffic import ping
from test_adopt_restart import ECHO_CLIENT, ECHO_SERVER, cli, kill9, master, status, up

FLOWS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     "support", "flows.py")
# With 24 flows the chance that a fanout hash leaves one of 3 queues
# without a flow is 3 * (2/3)**24, under 1 in 5,000.
N_FLOWS = 24


def queue_counters(lab) -> list:
    return [(q["rx_packets"], q["tx_packets"]) for q in status(lab)["queues"]]


def flows_cross(lab, port: int, n: int = N_FLOWS, size: int = 256 * 1024,
                every_queue: bool = True) -> list:
    """n TCP flows from the guest to the peer and back, each echoed intact;
    every queue delivered frames to the guest and sent the guest's."""
    before = queue_counters(lab)
    server = lab.popen("peer", sys.executable, FLOWS, "serve", PEER_IP4, str(port), str(n),
                       stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        p = lab.run("guest", sys.executable, FLOWS, "send", PEER_IP4, str(port), str(n),
                    str(size), timeout=60)
        assert json.loads(p.stdout) == {"flows": n, "ok": n}
        server.wait(10)
    finally:
        server.kill()
    after = queue_counters(lab)
    assert len(after) == len(before)
    moved = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before)]
    if every_queue:
        assert all(rx > 0 and tx > 0 for rx, tx in moved), f"per queue (rx, tx) frames: {moved}"
    return moved


def test_two_queues_carry_flows_both_ways_each(lab):
    p = cli(lab, "up", "ens10", "--queues", "2")
    assert p.returncode == 0, p.stderr
    try:
        st = status(lab)
        assert len(st["queues"]) == 2 and "--queues" in st["argv"]
        assert ping(lab, "peer", GUEST_IP4, count=20, interval=0.02).duplicates == 0
        moved = flows_cross(lab, 5401)
        m = st["master"]["stats"]
        # the master's totals are the queues' sums
        total = status(lab)
        assert total["master"]["stats"]["rx_packets"] == sum(q["rx_packets"] for q in total["queues"])
        assert m["tx_packets"] <= total["master"]["stats"]["tx_packets"]
        # one flow keeps to one queue, the same both ways: in order (the
        # guest's first segment may leave by another before the TAP has
        # seen the flow's answer: tun_automq_select_queue learns from it)
        before = queue_counters(lab)
        flows_cross(lab, 5403, n=1, size=4 << 20, every_queue=False)
        one = [(a[0] - b[0], a[1] - b[1]) for a, b in zip(queue_counters(lab), before)]
        main = max(range(2), key=lambda i: one[i][0])
        rx, tx = sum(q[0] for q in one), sum(q[1] for q in one)
        assert one[main][0] >= rx - 2 and one[main][1] >= tx - 2, f"one flow per queue: {one}"
        human = cli(lab, "status", "ens10").stdout
        assert "  queues: 0: rx " in human and ", 1: rx " in human, human
        metrics = cli(lab, "metrics", "ens10").stdout
        assert 'netfo_queue_packets_total{master="ens10",queue="1",direction="rx"}' in metrics
        print(f"(rx, tx) frames per queue for {N_FLOWS} flows: {moved}")
    finally:
        assert cli(lab, "down", "ens10").returncode == 0


def test_restart_to_other_queue_counts_keeps_the_master(lab):
    server = lab.popen("peer", sys.executable, "-c", ECHO_SERVER, PEER_IP4, "5402",
                       stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        assert cli(lab, "up", "ens10", "--queues", "2").returncode == 0
        index = master(lab)["ifindex"]
        client = lab.popen("guest", sys.executable, "-c", ECHO_CLIENT, PEER_IP4, "5402",
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "first"
        port = 5410
        for n in (2, 1, 3):
            old = status(lab)["pid"]
            p = cli(lab, "restart", "ens10", *(["--queues", str(n)] if n != 2 else []))
            assert p.returncode == 0, p.stderr
            deadline = time.monotonic() + 5     # the old daemon's queues close with it
            while os.path.exists(f"/proc/{old}") and time.monotonic() < deadline:
                time.sleep(0.05)
            st = status(lab)
            assert st["pid"] != old and st["active"] == "primary" and len(st["queues"]) == n
            assert master(lab)["ifindex"] == index
            queues = lab.run("guest", "ls", "/sys/class/net/ens10/queues").stdout.split()
            assert len([q for q in queues if q.startswith("tx-")]) == n, queues
            if n > 1:
                flows_cross(lab, port)
            else:
                assert ping(lab, "guest", PEER_IP4, count=5, interval=0.02).received == 5
            port += 1
            client.stdin.write(f"after-{n}\n")
            client.stdin.flush()
            assert client.stdout.readline().strip() == f"after-{n}"   # the same connection
        client.stdin.close()
        client.wait(10)
    finally:
        server.kill()
        cli(lab, "down", "ens10")


def test_kill9_then_up_adopts_the_master_with_its_queues(lab):
    assert cli(lab, "up", "ens10", "--queues", "2").returncode == 0
    try:
        index = master(lab)["ifindex"]
        kill9(lab)
        # the dead daemon's queues went with it; the persistent TAP stays
        assert master(lab)["ifindex"] == index
        assert cli(lab, "up", "ens10", "--queues", "2").returncode == 0
        st = status(lab)
        assert st["adopted"] and len(st["queues"]) == 2
        flows_cross(lab, 5420)
    finally:
        assert cli(lab, "down", "ens10").returncode == 0


def test_a_bad_queue_count_is_one_line_and_changes_nothing(lab):
    before = snapshot(lab)
    for n, why in (("0", "--queues must be at least 1"),
                   ("17", "--queues must be at most 16, not 17"),
                   ("two", "invalid int value: 'two'")):
        p = cli(lab, "up", "ens10", "--queues", n)
        lines = p.stderr.strip().splitlines()
        assert p.returncode != 0 and len(lines) == 1 and why in lines[0], p.stderr
        assert "Traceback" not in p.stderr
    assert diff(before, snapshot(lab)) == []
    up(lab)
    try:
        p = cli(lab, "restart", "ens10", "--queues", "0")
        lines = p.stderr.strip().splitlines()
        assert p.returncode != 0 and lines == ["netfo: --queues must be at least 1"], p.stderr
        assert ping(lab, "guest", PEER_IP4, count=3, interval=0.02).received == 3
    finally:
        assert cli(lab, "down", "ens10").returncode == 0


def test_a_single_queue_tap_is_refused_more_queues(lab):
    """A TAP made before --queues cannot take a second queue: said in one
    line before anything changes (queues.problem, which `up` asks first)."""
    lab.run("guest", "ip", "tuntap", "add", "dev", "oldtap", "mode", "tap")
    check = ("from netfo import queues; import sys; "
             "print(queues.problem(int(sys.argv[1]), 'oldtap'))")
    assert lab.run("guest", sys.executable, "-c", check, "1").stdout.strip() == "None"
    said = lab.run("guest", sys.executable, "-c", check, "2").stdout.strip()
    assert said.startswith("--queues 2: the TAP was made single-queue") and "\n" not in said
    lab.run("guest", "ip", "tuntap", "add", "dev", "newtap", "mode", "tap", "multi_queue")
    check_new = check.replace("oldtap", "newtap")
    assert lab.run("guest", sys.executable, "-c", check_new, "4").stdout.strip() == "None"
