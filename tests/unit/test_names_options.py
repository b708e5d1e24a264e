"""Names and option values: the kernel's rules for interface names, and
every bad `netfo up` option value is one line, exit 2, nothing asked or changed."""
import pytest

from netfo import cli
from netfo.config import ifname_problem


@pytest.mark.parametrize("name", ["", "a" * 16, "é" * 8, ".", "..", "a/b", "a:b", "a b",
                                  "a\tb", "a\nb", "a\0b", "a\x0bb", "a\u00a0b"])
def test_names_the_kernel_refuses(name):
    assert ifname_problem(name)


@pytest.mark.parametrize("name", ["ens10", "a" * 15, "é" * 7, 'e"x;y{', "...", "eth0.100", "-x"])
def test_names_the_kernel_takes(name):
    assert ifname_problem(name) is None


@pytest.fixture
def nothing_happens(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("netfo acted on a bad command line")
    monkeypatch.setattr(cli, "_spawn_daemon", forbidden)
    monkeypatch.setattr(cli.control, "request", forbidden)
    monkeypatch.setattr(cli.control, "running", forbidden)


def one_line_exit_2(capsys, argv) -> str:
    try:
        code = cli.main(argv)
    except SystemExit as e:             # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netfo: "), err
    return lines[0]


@pytest.mark.parametrize("argv", [["up", "{}"], ["down", "{}"], ["status", "{}"],
                                  ["status", "{}", "--check"], ["set", "{}", "active", "auto"],
                                  ["events", "{}"], ["restart", "{}"]])
@pytest.mark.parametrize("bad", ["a/b", "x" * 16, "..", "a b", ""])
def test_a_bad_interface_name_is_one_line_exit_2(capsys, nothing_happens, argv, bad):
    line = one_line_exit_2(capsys, [a.replace("{}", bad) for a in argv])
    assert "interface name" in line


@pytest.mark.parametrize("opts, words", [
    (["--busy-poll", "-1"], "--busy-poll cannot be negative"),
    (["--busy-poll", "2000000"], "--busy-poll must be at most"),
    (["--updelay", "-5"], "--updelay cannot be negative"),
    (["--updelay", "99999999999"], "--updelay must be at most"),
    (["--downdelay", "-1"], "--downdelay cannot be negative"),
    (["--downdelay", "3600001"], "--downdelay must be at most"),
    (["--miimon", "-10"], "--miimon cannot be negative"),
    (["--miimon", "abc"], "--miimon: invalid int value"),
    (["--notify-count", "-1"], "--notify-count cannot be negative"),
    (["--notify-count", "256"], "--notify-count must be at most 255"),
    (["--notify-interval", "-200"], "--notify-interval cannot be negative"),
    (["--probe-interval", "0"], "--probe-interval must be more than 0 ms"),
    (["--probe-interval", "-100"], "--probe-interval cannot be negative"),
    (["--probe-interval", "1.5"], "--probe-interval: invalid int value"),
    (["--probe-missed", "0"], "--probe-missed must be at least 1"),
    (["--probe-missed", "1000"], "--probe-missed must be at most 255"),
    (["--rx-policy", "none"], "--rx-policy: invalid choice"),
    (["--reselect", "never"], "--reselect: invalid choice"),
    (["--threads", "3"], "--threads: invalid choice"),
    (["--arp-target", "fd00::1"], "--arp-target 'fd00::1' is not an IPv4 address"),
    (["--arp-target", "300.1.1.1"], "is not an IPv4 address"),
    (["--ns-target", "192.0.2.1"], "--ns-target '192.0.2.1' is not an IPv6 address"),
    (["--primary", "a:b"], "--primary 'a:b' is not valid"),
    (["--primary", "x" * 16], "--primary 'xxxxxxxxxxxxxxxx' is too long"),
    (["--no-resend", "x"], "unrecognized arguments"),
])
def test_every_bad_option_value_is_one_line_exit_2(capsys, nothing_happens, opts, words):
    assert words in one_line_exit_2(capsys, ["up", "ens10", *opts])


def test_good_values_at_the_limits_pass():
    args = cli.parser().parse_args(["up", "ens10", "--busy-poll", "1000000", "--updelay",
                                    "3600000", "--notify-count", "0", "--miimon", "0",
                                    "--probe-missed", "255", "--primary", 'e"x;y{'])
    assert cli.config_of(args).notify_count == 0
