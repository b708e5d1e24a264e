"""The shipped systemd units: rendered with this netfo's path, and accepted
by `systemd-analyze verify` (which reports unknown or bad settings as
warnings: any line about our files fails the test)."""
import shutil
import subprocess

import pytest

from netfo import units
from netfo.cli import main


def verify(directory, *names):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", *names], cwd=directory,
                       capture_output=True, text=True, timeout=60)
    ours = [l for l in (p.stdout + p.stderr).splitlines() if str(directory) in l
            or any(n.lstrip("./") in l for n in names)]
    return p.returncode, ours


def test_install_writes_units_with_this_netfo_and_they_verify(tmp_path, capsys):
    assert main(["systemd", "install", "--prefix", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "systemctl enable --now netfo@ens10.service" in out
    unit = (tmp_path / "netfo@.service").read_text()
    cmd = units.netfo_command()
    assert units.PLACEHOLDER not in unit
    assert f"ExecStart={cmd} up %i --foreground\n" in unit
    assert f"ExecReload={cmd} restart %i\n" in unit
    for line in ("Type=notify", "NotifyAccess=all", "Restart=on-failure", "KillMode=mixed",
                 "Before=network-pre.target shutdown.target", "Wants=network-pre.target",
                 "After=sys-subsystem-net-devices-%i.device"):
        assert line in unit.splitlines() or any(l.startswith(line) for l in unit.splitlines())
    assert not [l for l in unit.splitlines() if l.startswith(("BindsTo=", "Requires=", "PartOf="))]
    assert "ExecStart=" + cmd + " auto" in (tmp_path / "netfo-auto.service").read_text()
    rc, ours = verify(tmp_path, "./netfo@ens10.service", "./netfo-auto.service")
    assert rc == 0 and ours == [], ours


def test_verify_catches_a_bad_setting(tmp_path):
    (tmp_path / "bad@.service").write_text(units.render("netfo@.service").replace(
        "KillMode=mixed", "KillMode=bogus"))
    rc, ours = verify(tmp_path, "./bad@ens10.service")
    assert ours, "systemd-analyze verify said nothing about a bad setting"


def test_netfo_command(tmp_path):
    venv_bin = tmp_path / "bin"
    venv_bin.mkdir()
    py = venv_bin / "python"
    py.write_text("")
    script = venv_bin / "netfo"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert units.netfo_command("netfo", str(py)) == str(script)         # beside the interpreter
    script.unlink()
    assert units.netfo_command("relative/netfo", str(py)) == f"{py} -I -m netfo"
    other = tmp_path / "other" / "netfo"
    other.parent.mkdir()
    other.write_text("")
    other.chmod(0o755)
    assert units.netfo_command(str(other), str(py)) == str(other)       # the absolute argv[0]
