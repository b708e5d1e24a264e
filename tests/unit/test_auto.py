"""netfo auto: the configuration file and which links it starts a master for."""
import pytest

from netfo import auto
from netfo.errors import NetfoError
from netfo.group import Link
from netfo.kernel import links

MAC = "52:54:00:00:12:53"


def test_parse_full_example():
    cfg = auto.parse("""
[auto]
interfaces = ens10 ens12   # by name
match = virtio driver:ixgbevf
options = --notify-count 3
start = spawn

[ens12]
options = --primary ens13
""")
    assert cfg.interfaces == ["ens10", "ens12"]
    assert cfg.drivers == ["virtio_net", "ixgbevf"]
    assert cfg.options_for("ens10") == ["--notify-count", "3"]
    assert cfg.options_for("ens12") == ["--primary", "ens13"]
    assert cfg.start == "spawn"


def test_the_docstring_example_parses():
    example = auto.__doc__.split("The configuration file (INI):", 1)[1]
    cfg = auto.parse("\n".join(l[4:] for l in example.splitlines()))
    assert cfg.interfaces == ["ens10", "ens12"] and cfg.drivers == ["virtio_net"]


@pytest.mark.parametrize("text, says", [
    ("", "no [auto] section"),
    ("[auto]\n", "names no interfaces"),
    ("[auto]\ninterfaces = ens10\nfoo = 1\n", "unknown setting foo"),
    ("[auto]\nmatch = mlx5\n", "is not virtio or driver:NAME"),
    ("[auto]\ninterfaces = ens10\nstart = cron\n", "start must be spawn or systemd"),
    ("[auto]\ninterfaces = ens10\noptions = --no-such-option\n", "bad `netfo up` options"),
    ("[auto]\ninterfaces = ens10\n[ens10]\nbar = 2\n", "[ens10]: unknown setting bar"),
    ("[auto\n", "netfo.conf"),
])
def test_parse_errors_are_one_line(text, says):
    with pytest.raises(NetfoError) as e:
        auto.parse(text)
    assert says in str(e.value) and "\n" not in str(e.value)


def link(index, name, mac=MAC, kind="veth"):
    return Link(index=index, name=name, mac=mac, kind=kind)


def names(links, cfg, drivers=None, running=(), journals=()):
    return auto.candidates(links, cfg, driver_of=lambda n: (drivers or {}).get(n),
                           running=lambda n: n in running, journalled=lambda n: n in journals)


def test_candidates_need_a_same_mac_partner():
    cfg = auto.AutoConfig(interfaces=["ens10"])
    assert names([link(2, "ens10")], cfg) == []
    assert names([link(2, "ens10"), link(3, "ens11", mac="52:54:00:00:00:01")], cfg) == []
    assert names([link(2, "ens10"), link(3, "ens11")], cfg) == ["ens10"]


def test_candidates_skip_netfo_own_links_and_running_masters():
    cfg = auto.AutoConfig(drivers=["virtio_net"])
    drivers = {"ens10": "virtio_net", "ens10nsby": "virtio_net"}
    up = [link(4, "ens10", kind="tun"), link(2, "ens10nsby"), link(3, "ens11")]
    assert names(up, cfg, drivers) == []                        # the TAP, the renamed standby
    before = [link(2, "ens10"), link(3, "ens11")]
    assert names(before, cfg, drivers) == ["ens10"]             # matched by driver
    assert names(before, cfg, drivers, running={"ens10"}) == []
    assert names(before, auto.AutoConfig(interfaces=["ens12"])) == []   # neither named nor matched
    # a standby name taken (the kernel's net_failover, or a crashed netfo): leave it
    assert names(before + [link(5, "ens10nsby", mac="52:54:00:00:00:02")], cfg, drivers) == []


def test_candidates_include_a_master_whose_daemon_died():
    up = [link(4, "ens10", kind="tun"), link(2, "ens10nsby"), link(3, "ens11")]
    drivers = {"ens10nsby": "virtio_net"}
    for cfg in (auto.AutoConfig(interfaces=["ens10"]), auto.AutoConfig(drivers=["virtio_net"])):
        assert names(up, cfg, drivers, journals={"ens10"}) == ["ens10"]     # up adopts it
        assert names(up, cfg, drivers, journals={"ens10"}, running={"ens10"}) == []
        assert names(up, cfg, drivers) == []                  # a TAP without journal: not ours
    assert names(up, auto.AutoConfig(interfaces=["ens12"]), journals={"ens10"}) == []


def test_driver_from_sysfs(tmp_path):
    dev = tmp_path / "ens10" / "device"
    dev.mkdir(parents=True)
    (dev / "driver").symlink_to("/sys/bus/virtio/drivers/virtio_net")
    assert auto.driver("ens10", str(tmp_path)) == "virtio_net"
    assert auto.driver("lo", str(tmp_path)) is None


def test_a_scan_whose_link_dump_fails_starts_nothing_and_returns(caplog):
    """The service lives on: the next tick scans again."""
    from pyroute2.netlink.exceptions import NetlinkDumpInterrupted

    class Interrupted:
        calls = 0

        def link(self, *args, **kwargs):
            Interrupted.calls += 1
            raise NetlinkDumpInterrupted()

    a = auto.Auto(auto.parse("[auto]\ninterfaces = ens10\n"))
    a.scan(Interrupted())
    assert Interrupted.calls == links.DUMP_TRIES         # asked again before giving up
    assert a.children == {}
    assert "reading the links failed" in caplog.text
