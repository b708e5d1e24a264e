"""A very short run of the failover benchmark (python3 -m bench.failover).

Checks that it runs end to end in both variants, that its JSON has the
structure the README table is made from, that netfo lost no guest->peer
frame when the VF was deleted (the datapath resends a frame whose slave
vanished on the standby), and that no namespace is left behind.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIRS = ("guest_to_peer", "peer_to_guest")


@pytest.mark.skipif(os.geteuid() != 0, reason="the bench needs root (network namespaces)")
def test_failover_bench_smoke(tmp_path):
    out = tmp_path / "failover.json"
    prefix = f"fs{os.getpid() % 10000}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.failover", "--quick", "--cycles", "2", "--rate", "2000",
         "--causes", "deleted", "--retries", "0", "--json", str(out), "--prefix", prefix],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.terminate()            # the bench tears its lab down on SIGTERM
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    left = [n for n in os.listdir("/var/run/netns") if n.startswith(prefix + "-")] \
        if os.path.isdir("/var/run/netns") else []
    assert not left, f"namespaces left behind: {left}"
    assert proc.returncode == 0, (stdout[-2000:], stderr[-2000:])
    assert "unplug (VF deleted)" in stdout and "cycle 2/2" in stderr

    doc = json.loads(out.read_text())
    assert doc["settings"]["rate"] == 2000 and doc["settings"]["cycles"] == 2
    assert "skipped" in doc["results"]["blackhole"]          # not in --causes: recorded as skipped
    per = doc["results"]["deleted"]
    for variant in ("netfo", "kernel"):
        r = per[variant]
        assert not r["errors"], r["errors"]
        assert r["cycles_done"] == 2 and len(r["cycles"]) == 4
        for key in ("summary", "summary_all"):     # summary: windows without much CPU steal
            for phase in ("away", "back"):
                assert r[key][phase]["windows"] <= 2
                for d in DIRS:
                    x = r[key][phase][d]
                    for metric in ("lost", "gap_ms"):
                        assert set(x[metric]) >= {"p50", "p99", "max"}, (variant, key, phase, d)
        assert r["summary_all"]["away"]["windows"] == 2
        # each switch timed from the kernel's event to the first frame on the standby
        assert r["summary_all"]["away"]["switch_ms"]["n"] == 2, [c["switch_ms"] for c in r["cycles"]]
        for d in DIRS:
            s = r["streams"][d]
            assert s["sent"] > 0 and s["received"] > 0.9 * s["sent"], (variant, d, s)
            assert s["duplicates"] == 0, (variant, d)
    assert set(doc["ratios"]["deleted"]["away"]) == set(DIRS)
    # The datapath resends a frame whose slave vanished: nothing the guest
    # sends is lost when the VF is deleted (in every window, stolen CPU or not).
    lost = per["netfo"]["summary_all"]["away"]["guest_to_peer"]["lost"]
    assert lost["max"] == 0, [c["lost"] for c in per["netfo"]["cycles"]]
