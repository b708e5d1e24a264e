"""The metrics text (netfo/metrics.py), read back with prometheus_client's
parser as Prometheus would read it; no root, no daemon."""
import copy
import shutil
import subprocess

import pytest

from netfo import metrics

parser = pytest.importorskip("prometheus_client.parser")

MAC = "52:54:00:00:12:53"


def stats(rx, tx, rxb=None, txb=None, rxd=0, txd=0):
    return {"rx_packets": rx, "rx_bytes": rxb if rxb is not None else rx * 100,
            "tx_packets": tx, "tx_bytes": txb if txb is not None else tx * 100,
            "rx_dropped": rxd, "tx_dropped": txd}


def slave(role, name, index, transmitting, ready=True, probe=None, **kw):
    return {"role": role, "name": name, "index": index, "admin_up": True, "carrier": ready,
            "ready": ready, "transmitting": transmitting, "stats": stats(**kw),
            "mtu": 1500, "perm_mac": None, "speed": 10000, "duplex": "full",
            "link_failures": 1 if role == "primary" else 0, "probe": probe}


def sample(name="ens10", probing=False):
    """A status reply (server.py) after one failover to the standby."""
    probe = {"up": True, "misses": 0, "missed_total": 4} if probing else None
    return {
        "version": 1, "netfo_version": "0.1.0",
        "master": {"name": name, "index": 7, "mac": MAC, "mtu": 1500, "carrier": True,
                   "stats": {**stats(1000, 2000, rxd=3, txd=5), "rx_coalesced": 17}},
        "active": "standby", "loop_active": "standby", "rx_policy": "active",
        "queues": [stats(600, 1200, rxd=1, txd=5), stats(400, 800, rxd=2)],
        "slaves": [slave("primary", "ens11", 5, False, ready=False, rx=400, tx=900,
                         probe=dict(probe, up=False, misses=3, missed_total=7) if probe else None),
                   slave("standby", name + "nsby", 3, True, rx=600, tx=1100, txd=5,
                         probe=probe)],
        "drops": {"no_slave": 5, "rx_policy": 3, "otherhost": 0, "truncated": 0},
        "forced": None,
        "policy": {"updelay_ms": 0, "downdelay_ms": 0, "reselect": "always", "miimon_ms": 10,
                   "primary": None, "notify_count": 1, "notify_interval_ms": 200},
        "probe": {"targets": ["192.0.2.1"] if probing else [], "interval_ms": 100, "missed": 3},
        "events": [], "failovers": 1, "loop_switches": 1, "last_failover": 1764640000.5,
        "pid": 4242, "since": 1764639000.25, "adopted": False, "argv": [],
        "silence": {"table": "netfo_" + name, "reinstalls": 2, "last": 1764640100.0},
    }


def families(text):
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def value(fams, family, sample_name=None, **labels):
    """The one sample of family with these labels (exactly those)."""
    found = [s.value for s in fams[family].samples
             if (sample_name is None or s.name == sample_name) and s.labels == labels]
    assert len(found) == 1, (family, labels, fams[family].samples)
    return found[0]


def test_every_family_parses_with_its_type_and_help():
    text = metrics.render([sample(probing=True)])
    fams = families(text)
    for name, kind, help_text in metrics.FAMILIES:
        # the parser names a counter family without its _total
        key = name[:-len("_total")] if kind == "counter" else name
        assert key in fams, name
        assert fams[key].type == kind and fams[key].documentation == help_text
    for line in text.splitlines():
        assert line.startswith("# ") or line.startswith("netfo_")


def test_values_are_the_status_counters():
    fams = families(metrics.render([sample()]))
    m = {"master": "ens10"}
    assert value(fams, "netfo_queue_packets", queue="1", direction="rx", **m) == 400
    assert value(fams, "netfo_queue_dropped", queue="0", direction="tx", **m) == 5
    assert value(fams, "netfo_master_packets", direction="rx", **m) == 1000
    assert value(fams, "netfo_master_bytes", direction="tx", **m) == 200000
    assert value(fams, "netfo_master_dropped", direction="tx", **m) == 5
    p = {"master": "ens10", "role": "primary", "slave": "ens11"}
    s = {"master": "ens10", "role": "standby", "slave": "ens10nsby"}
    assert value(fams, "netfo_slave_packets", direction="rx", **p) == 400
    assert value(fams, "netfo_slave_packets", direction="tx", **s) == 1100
    assert value(fams, "netfo_slave_dropped", direction="tx", **s) == 5
    assert value(fams, "netfo_transmitting", **p) == 0
    assert value(fams, "netfo_transmitting", **s) == 1
    assert value(fams, "netfo_slave_up", **p) == 0
    assert value(fams, "netfo_slave_link_failures", **p) == 1
    assert value(fams, "netfo_drops", reason="no_slave", **m) == 5
    assert value(fams, "netfo_drops", reason="truncated", **m) == 0
    assert value(fams, "netfo_failovers", **m) == 1
    assert value(fams, "netfo_loop_switches", **m) == 1
    assert value(fams, "netfo_last_failover_timestamp_seconds", **m) == 1764640000.5
    assert value(fams, "netfo_start_time_seconds", **m) == 1764639000.25
    assert value(fams, "netfo_master_carrier", **m) == 1
    assert value(fams, "netfo_info", version="0.1.0", **m) == 1
    assert value(fams, "netfo_forced", role="primary", **m) == 0
    assert value(fams, "netfo_silence_reinstalls", **m) == 2
    assert value(fams, "netfo_gro_merged_segments", **m) == 17
    # counters carry _total on the wire
    assert {s.name for s in fams["netfo_failovers"].samples} == {"netfo_failovers_total"}


def test_probe_families_only_with_probing():
    assert "netfo_probe_path_up" not in families(metrics.render([sample()]))
    fams = families(metrics.render([sample(probing=True)]))
    p = {"master": "ens10", "role": "primary", "slave": "ens11"}
    assert value(fams, "netfo_probe_path_up", **p) == 0
    assert value(fams, "netfo_probe_missed_rounds", **p) == 7


def test_no_failover_yet_means_no_last_failover_sample():
    st = sample()
    st["last_failover"] = None
    assert "netfo_last_failover_timestamp_seconds" not in metrics.render([st])


def test_several_masters_share_one_help_and_type_per_family():
    text = metrics.render([sample("ens10"), sample("ens12")])
    assert text.count("# TYPE netfo_failovers_total counter") == 1
    fams = families(text)
    masters = {s.labels["master"] for s in fams["netfo_failovers"].samples}
    assert masters == {"ens10", "ens12"}


def test_label_values_are_escaped():
    st = copy.deepcopy(sample())
    st["slaves"][0]["name"] = 'a"b\\c'          # legal in an interface name
    fams = families(metrics.render([st]))
    names = {s.labels.get("slave") for s in fams["netfo_transmitting"].samples}
    assert 'a"b\\c' in names


def test_no_master_no_text():
    assert metrics.render([]) == ""


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed "
                    "(Debian: apt-get install prometheus)")
def test_promtool_finds_nothing_to_complain_about():
    text = metrics.render([sample("ens10", probing=True), sample("ens12")])
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), \
        (p.stdout, p.stderr)
