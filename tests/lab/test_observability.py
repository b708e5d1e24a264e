"""What an operator reads, in the lab: `netfo metrics` and the daemon's
--metrics-listen endpoint (read with prometheus_client's parser, checked
with promtool when installed), `status -d`, -j/-p; a bad metrics address
fails `up` with one line and changes nothing."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from netfo import spawn
from netfo.lab import GUEST_IP4, PEER_IP4
from support.harness import Netfo
from support.traffic import ping

parser = pytest.importorskip("prometheus_client.parser")

PORT = 9100
SCRAPE = """
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        print(r.status, r.headers["Content-Type"]); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.headers["Content-Type"])
"""


def scrape(lab, ns: str, url: str) -> tuple:
    """GET url from inside namespace ns, as Prometheus would: (status, type, body)."""
    out = lab.run(ns, sys.executable, "-c", SCRAPE, url, timeout=30).stdout
    head, _, body = out.partition("\n")
    status, ctype = head.split(" ", 1)
    return int(status), ctype, body


def samples(text: str) -> dict:
    """{(sample name, frozenset(labels)): value}."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in parser.text_string_to_metric_families(text) for s in f.samples}


def one(found: dict, name: str, **labels) -> float:
    return found[(name, frozenset({"master": "ens10", **labels}.items()))]


def promtool_ok(text: str) -> None:
    if shutil.which("promtool") is None:
        return
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), (p.stdout, p.stderr)


def test_metrics_and_details_follow_a_failover(lab):
    with Netfo(lab, "--metrics-listen", f"{GUEST_IP4}:{PORT}", "--arp-target", PEER_IP4) as n:
        lab.link("virtio", "up")
        n.wait(lambda s: all(sl["carrier"] for sl in s["slaves"]), what="both carriers")
        assert ping(lab, "guest", PEER_IP4, count=20).received == 20
        lab.link("vf", "down")                      # the primary loses its carrier
        n.wait(lambda s: s["active"] == "standby", what="standby transmitting")
        assert ping(lab, "guest", PEER_IP4, count=20).received == 20
        # The scrape goes through netfo itself: the peer reaches the
        # master's address (which moved from the NIC to the master after
        # the socket was bound to it).
        url = f"http://{GUEST_IP4}:{PORT}/metrics"
        code, ctype, before = scrape(lab, "peer", url)
        st = n.status()
        cli_text = n.cli("metrics", "ens10").stdout
        code2, _, after = scrape(lab, "peer", url)
        assert (code, code2) == (200, 200)
        assert ctype == "text/plain; version=0.0.4; charset=utf-8"
        m0, m1, mc = samples(before), samples(after), samples(cli_text)
        assert set(m0) == set(m1) == set(mc)        # one text, two ways to get it
        for text in (before, cli_text):
            promtool_ok(text)

        # counters: the status read between two scrapes lies between them
        for d in ("rx", "tx"):
            for key, name in (("packets", "netfo_master_packets_total"),
                              ("bytes", "netfo_master_bytes_total")):
                v = st["master"]["stats"][f"{d}_{key}"]
                assert one(m0, name, direction=d) <= v <= one(m1, name, direction=d), (name, d)
            for sl in st["slaves"]:
                lab_ = {"role": sl["role"], "slave": sl["name"], "direction": d}
                v = sl["stats"][f"{d}_packets"]
                assert one(m0, "netfo_slave_packets_total", **lab_) <= v \
                    <= one(m1, "netfo_slave_packets_total", **lab_)
        assert one(m1, "netfo_slave_packets_total", role="standby", slave="ens10nsby",
                   direction="tx") >= 20
        for reason, v in st["drops"].items():
            assert one(m0, "netfo_drops_total", reason=reason) <= v
        p = {"role": "primary", "slave": "ens11"}
        s = {"role": "standby", "slave": "ens10nsby"}
        assert one(m1, "netfo_transmitting", **p) == 0
        assert one(m1, "netfo_transmitting", **s) == 1
        assert one(m1, "netfo_failovers_total") == 1
        assert one(m1, "netfo_slave_link_failures_total", **p) == 1
        assert one(m1, "netfo_slave_link_failures_total", **s) == 0
        assert one(m1, "netfo_slave_up", **p) == 0
        assert one(m1, "netfo_probe_path_up", **s) == 1
        assert one(m1, "netfo_start_time_seconds") == st["since"]
        assert abs(one(m1, "netfo_last_failover_timestamp_seconds") - time.time()) < 60

        # every master of the namespace without a name; a path not served
        assert samples(n.cli("metrics").stdout).keys() == mc.keys()
        assert scrape(lab, "peer", f"http://{GUEST_IP4}:{PORT}/")[0] == 404

        # status -d: /proc/net/bonding's words
        details = n.cli("status", "-d", "ens10").stdout
        blocks = details.split("\n\n")
        primary = next(b for b in blocks if "Slave Interface: ens11 (primary" in b)
        standby = next(b for b in blocks if "Slave Interface: ens10nsby (standby" in b)
        assert "Link Failure Count: 1" in primary and "Link Failure Count: 0" in standby
        assert "MII Status: down (admin up, no carrier)" in primary
        assert "Speed: 10000 Mbps" in standby and "Duplex: full" in standby  # veth's
        assert "Permanent HW addr: none reported" in standby                 # veth has none
        assert f"ARP IP target/s (n.n.n.n form): {PEER_IP4}" in details
        assert "Currently Active Slave: ens10nsby" in details
        sl = {x["role"]: x for x in n.status()["slaves"]}
        assert sl["primary"]["link_failures"] == 1
        assert sl["standby"]["speed"] == 10000 and sl["standby"]["duplex"] == "full"
        assert set(sl["standby"]["probe"]) == {"up", "misses", "missed_total"}

        # -j compact, -p pretty, before or after the command
        compact = n.cli("-j", "status", "ens10").stdout
        pretty = n.cli("status", "ens10", "-j", "-p").stdout
        assert compact.count("\n") == 1 and pretty.count("\n") > 50
        a, b = json.loads(compact), json.loads(pretty)
        assert a.keys() == b.keys() and a["master"]["mac"] == b["master"]["mac"]


def test_metrics_endpoint_survives_a_restart(lab):
    def cli(*argv):
        return lab.run("guest", *spawn.netfo(*argv), check=False, timeout=60)
    p = cli("up", "ens10", "--metrics-listen", f"127.0.0.1:{PORT}")
    assert p.returncode == 0, p.stderr
    try:
        url = f"http://127.0.0.1:{PORT}/metrics"
        code, _, text = scrape(lab, "guest", url)
        old = one(samples(text), "netfo_start_time_seconds")
        assert code == 200
        p = cli("restart", "ens10")
        assert p.returncode == 0, p.stderr
        code, _, text = scrape(lab, "guest", url)    # the new daemon serves it
        assert code == 200 and one(samples(text), "netfo_start_time_seconds") > old
    finally:
        assert cli("down", "ens10").returncode == 0


def links(lab) -> list:
    return sorted((l["ifname"], l["address"], tuple(l["flags"]))
                  for l in json.loads(lab.run("guest", "ip", "-j", "link").stdout))


@pytest.mark.parametrize("case", ["not here", "in use"])
def test_a_bad_metrics_address_fails_up_in_one_line_and_changes_nothing(lab, case):
    holder = None
    if case == "in use":
        holder = lab.popen("guest", sys.executable, "-c",
                           "import socket, sys; s = socket.socket(); "
                           f"s.bind(('0.0.0.0', {PORT})); s.listen(); print('ok', flush=True); "
                           "sys.stdin.read()", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)
        assert holder.stdout.readline().strip() == "ok"
    addr = "192.0.2.99" if case == "not here" else "127.0.0.1"
    try:
        before = links(lab)
        p = lab.run("guest", *spawn.netfo("up", "ens10", "--metrics-listen", f"{addr}:{PORT}"),
                    check=False, timeout=60)
        assert p.returncode == 1
        why = ("no interface in this network namespace has the address 192.0.2.99"
               if case == "not here" else
               f"port {PORT} is in use (another program, or another netfo master, listens there)")
        assert p.stderr == f"netfo: --metrics-listen {addr}:{PORT}: {why}\n"
        assert links(lab) == before
    finally:
        if holder is not None:
            holder.stdin.close()
            holder.wait(10)
