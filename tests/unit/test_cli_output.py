"""iproute2 habits of the command line: -j/-p/-d before or after the
command, --version, and `status -d` in /proc/net/bonding's words; no root."""
import json

import pytest

import netfo
from netfo import cli, details

from test_metrics import sample


@pytest.mark.parametrize("argv, want", [
    (["status"], (False, False, False)),
    (["-j", "status"], (True, False, False)),
    (["status", "-j"], (True, False, False)),
    (["status", "--json"], (True, False, False)),
    (["-j", "-p", "status", "ens10"], (True, True, False)),
    (["status", "ens10", "--json", "--pretty"], (True, True, False)),
    (["-j", "status", "-p"], (True, True, False)),
    (["-d", "status"], (False, False, True)),
    (["status", "-d", "ens10"], (False, False, True)),
    (["status", "--details"], (False, False, True)),
])
def test_output_options_before_or_after_the_command(argv, want):
    a = cli.parser().parse_args(argv)
    assert (a.json, a.pretty, a.details) == want


@pytest.mark.parametrize("argv", [["events", "ens10", "-j"], ["-j", "events", "ens10"],
                                  ["events", "ens10", "--json", "-f"]])
def test_events_json_either_way(argv):
    assert cli.parser().parse_args(argv).json is True


def test_version(capsys):
    for flag in ("--version", "-V"):
        with pytest.raises(SystemExit) as e:
            cli.parser().parse_args([flag])
        assert e.value.code == 0
        assert capsys.readouterr().out == f"netfo {netfo.__version__}\n"


def test_metrics_name_is_checked_as_the_kernel_would(capsys):
    assert cli.main(["metrics", "ens10abcdefghijk"]) == 2
    assert "too long" in capsys.readouterr().err


def status_args(*argv):
    return cli.parser().parse_args(["status", *argv])


def test_json_is_compact_unless_pretty():
    st = sample()
    compact = cli.dumps(st, status_args("-j"))
    assert "\n" not in compact and ", " not in compact and json.loads(compact) == st
    pretty = cli.dumps(st, status_args("-j", "-p"))
    assert pretty.startswith('{\n  "version": 1') and json.loads(pretty) == st


def test_status_details_speak_bonding():
    st = sample(probing=True)
    st["slaves"][0]["perm_mac"] = "52:54:00:00:12:53"
    text = details.render(st)
    lines = [line.strip() for line in text.splitlines()]
    for want in ("Bonding Mode: fault-tolerance (active-backup), as net_failover",
                 "Primary Slave: ens11 (primary_reselect always)",
                 "Currently Active Slave: ens10nsby",
                 "MII Status: up", "MII Polling Interval (ms): 10",
                 "Up Delay (ms): 0", "Down Delay (ms): 0",
                 "ARP Polling Interval (ms): 100", "ARP Missed Max: 3",
                 "ARP IP target/s (n.n.n.n form): 192.0.2.1",
                 "Slave Interface: ens11 (primary, index 5)",
                 "MII Status: down (admin up, no carrier)",
                 "Speed: 10000 Mbps", "Duplex: full", "Link Failure Count: 1",
                 "Permanent HW addr: 52:54:00:00:12:53 (current 52:54:00:00:12:53)",
                 "Probe: path down, 3 round(s) missed in a row, 7 in all",
                 "Slave Interface: ens10nsby (standby, index 3)", "Link Failure Count: 0"):
        assert want in lines, (want, text)


def test_status_details_without_probing_speed_or_primary():
    st = sample()
    del st["slaves"][0]
    st["slaves"][0].update(speed=None, duplex=None)
    st["active"] = None
    lines = [line.strip() for line in details.render(st).splitlines()]
    for want in ("Primary Slave: None (primary_reselect always)", "Currently Active Slave: None",
                 "ARP Polling Interval (ms): 0", "ARP IP target/s (n.n.n.n form):",
                 "Speed: Unknown", "Duplex: unknown", "Permanent HW addr: none reported "
                 "(current 52:54:00:00:12:53)"):
        assert want in lines, want
    assert not any(line.startswith("Probe:") for line in lines)
