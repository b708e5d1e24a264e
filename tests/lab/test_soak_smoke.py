"""A short soak (bench.soak, 50 cycles of unplug/plug and carrier flaps
under a stream each way, path probing on): every cycle ends with the status's
transmitting slave equal to the datapath's; the daemon's fds, threads and
RSS stay flat, its log grows by a bounded amount per cycle, no slave is left
held, the counters add up."""
from bench.soak import soak
from support.harness import unique_prefix

CYCLES = 50


def test_soak_smoke():
    r = soak(CYCLES, rate=10000, prefix=unique_prefix())
    assert r["cycles"] == CYCLES and r["failures"] == 0, r["failed"]
    s, e = r["start"], r["end"]
    assert e["fds"] <= s["fds"] + 2, r
    assert e["threads"] <= s["threads"], r
    assert e["rss_kb"] <= s["rss_kb"] + 4096, r          # 4 MB
    assert e["log_bytes"] - s["log_bytes"] <= CYCLES * 2048, r
    assert r["held_left"] == [] and not r["journal_left"], r
    assert r["alive"] and r["counts_add_up"], r
