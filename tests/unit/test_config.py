"""Config: the one home of `netfo up`'s defaults, help texts and checks."""
import dataclasses

import pytest

from netfo import cli
from netfo.config import Config


def up_args(*argv):
    return cli.parser().parse_args(["up", "ens10", *argv])


def test_cli_defaults_are_configs():
    args = up_args()
    for f in dataclasses.fields(Config):
        got = getattr(args, f.name)
        assert (tuple(got) if isinstance(got, list) else got) == f.default, f.name
    assert Config().notify_interval == 200          # the daemon's old 0.0 is gone


def test_help_texts_come_from_config():
    text = cli.parser()._subparsers._group_actions[0].choices["up"].format_help()
    assert "between announcements (default 200)" in text
    assert "loop looks at each slave's carrier" in text and "(default 10;" in text


def test_argv_round_trips():
    c = Config(primary="ens11", rx_policy="all", threads=2, updelay=300, resend=False,
               arp_targets=("192.0.2.1",), ns_targets=("fd00::0001",), probe_missed=5)
    assert c.ns_targets == ("fd00::1",)              # as the prober compares what it hears
    assert cli.config_of(up_args(*c.argv())) == c
    assert cli.config_of(up_args(*Config().argv())) == Config()


@pytest.mark.parametrize("kw, words", [
    ({"updelay": -1}, "--updelay cannot be negative"),
    ({"reselect": "never"}, "--reselect must be one of always, better, failure, not 'never'"),
    ({"probe_missed": 0}, "--probe-missed must be at least 1"),
    ({"arp_targets": ("fd00::1",)}, "--arp-target 'fd00::1' is not an IPv4 address"),
])
def test_a_bad_value_is_one_clear_line(kw, words):
    with pytest.raises(ValueError) as e:
        Config(**kw)
    assert str(e.value) == words


def test_cli_exits_2_for_a_bad_value(capsys):
    assert cli.main(["up", "ens10", "--updelay", "-5"]) == 2
    assert capsys.readouterr().err.strip() == "netfo: --updelay cannot be negative"


def test_views_in_seconds():
    c = Config(updelay=500, downdelay=250, miimon=20, notify_interval=150, probe_interval=50)
    p = c.policy()
    assert (p.updelay, p.downdelay, p.reselect) == (0.5, 0.25, "always")
    assert (c.miimon_s, c.notify_interval_s, c.probe_interval_s) == (0.02, 0.15, 0.05)
