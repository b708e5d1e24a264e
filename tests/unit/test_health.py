"""netfo status --check: the status reply -> (exit code, one line)."""
from netfo import health


def status(active, roles=("primary", "standby"), forced=None):
    names = {"primary": "ens11", "standby": "ens10nsby"}
    return {"active": active, "forced": forced,
            "slaves": [{"role": r, "name": names[r]} for r in roles]}


def test_primary_is_ok():
    assert health.check("ens10", status("primary")) == (0, "OK: ens10 transmits via primary ens11")


def test_standby_is_degraded_and_says_why():
    code, line = health.check("ens10", status("standby", roles=("standby",)))
    assert (code, line) == (1, "DEGRADED: ens10 transmits via standby ens10nsby (no primary)")
    assert health.check("ens10", status("standby"))[1].endswith("(the primary cannot transmit)")
    assert health.check("ens10", status("standby", forced="standby"))[1].endswith("(forced)")


def test_nothing_or_no_daemon_is_down():
    assert health.check("ens10", status(None)) == (
        2, "DOWN: ens10: no slave can transmit (frames are dropped)")
    code, line = health.check("ens10", None)
    assert code == 2 and line.startswith("DOWN: ens10: netfo is not running")


def test_transmits():
    assert health.transmits(status("standby")) and not health.transmits(status(None))
