"""netfo as a new user installs it: a normal (non-editable) install into a
fresh virtual environment, run from the source tree's root and from a
directory holding a decoy `netfo/` package.

Children (the daemon `netfo up` leaves behind, the demo's stream tools) must
import the installed netfo: the source tree has no compiled extension, and a
root process must never import code from the caller's working directory.
The decoy leaves a marker file if anything imports it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from support.harness import REPO, unique_prefix

DECOY = """import os
with open({marker!r}, "a") as f:
    f.write("imported by pid %d\\n" % os.getpid())
raise ImportError("decoy netfo imported")
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(netfo console script, a clean source tree, a decoy dir, the marker)."""
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    # The tree as a clone has it: no build products of the editable install.
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "*.so", "*.c", "__pycache__", ".pytest_cache"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    p = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(src)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert not list((src / "netfo").glob("*.so")), "the install built into the source tree"
    marker = base / "decoy-imported"
    decoy = base / "decoy"
    (decoy / "netfo").mkdir(parents=True)
    for name in ("__init__.py", "__main__.py"):
        (decoy / "netfo" / name).write_text(DECOY.format(marker=str(marker)))
    return str(venv / "bin" / "netfo"), str(src), str(decoy), marker


@pytest.mark.parametrize("where", ["source", "decoy"])
def test_up_and_down_from_any_directory(installed, lab, where):
    netfo, src, decoy, marker = installed
    cwd = src if where == "source" else decoy

    def run(*argv):
        return subprocess.run(["ip", "netns", "exec", lab.guest, netfo, *argv], cwd=cwd,
                              capture_output=True, text=True, timeout=60)

    up = run("up", "ens10")
    try:
        assert up.returncode == 0, up.stderr
        st = json.loads(run("status", "ens10", "--json").stdout)
        assert st["active"] == "primary" and {s["role"] for s in st["slaves"]} == {"primary", "standby"}
        with open(f"/proc/{st['pid']}/cmdline", "rb") as f:
            argv = f.read().decode().split("\0")
        assert argv[0].startswith(os.path.dirname(netfo)), argv     # the venv's python
        assert argv[1] == "-I", argv        # isolated: no working directory on sys.path
        assert os.readlink(f"/proc/{st['pid']}/cwd") == "/"
    finally:
        down = run("down", "ens10")
    assert down.returncode == 0, down.stderr
    assert not marker.exists(), marker.read_text()


@pytest.mark.parametrize("where", ["source", "decoy"])
def test_demo_from_any_directory(installed, where):
    netfo, src, decoy, marker = installed
    prefix = unique_prefix()
    p = subprocess.run([netfo, "demo", "--prefix", prefix, "--rate", "2000"],
                       cwd=src if where == "source" else decoy,
                       capture_output=True, text=True, timeout=180)
    try:
        assert p.returncode == 0, p.stdout[-1500:] + p.stderr[-1500:]
        assert "OK: connectivity survived" in p.stdout
        assert not marker.exists(), marker.read_text()
    finally:
        subprocess.run([netfo, "lab", "--prefix", prefix, "down"], capture_output=True, timeout=60)


def test_the_installed_package_ships_the_systemd_units(installed, tmp_path):
    """The units are package data: a non-editable install has them, and
    `netfo systemd install` puts that installation's netfo in ExecStart=."""
    netfo = installed[0]
    p = subprocess.run([netfo, "systemd", "install", "--prefix", str(tmp_path)],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert p.returncode == 0, p.stderr
    assert "systemctl enable --now netfo@ens10.service" in p.stdout
    unit = (tmp_path / "netfo@.service").read_text()
    assert f"ExecStart={netfo} up %i --foreground\n" in unit
    assert f"ExecStart={netfo} auto" in (tmp_path / "netfo-auto.service").read_text()


SHARED = ("man/man8/netfo.8", "bash-completion/completions/netfo", "zsh/site-functions/_netfo")


def test_the_installed_package_ships_its_man_page_and_completion(installed, tmp_path):
    """setup.py writes netfo(8) and the completions from the parser at build
    time; a non-editable install puts them under the prefix's share/, whence
    the README's first command links them into /usr/local/share."""
    netfo = installed[0]
    prefix = os.path.dirname(os.path.dirname(netfo))
    py = os.path.join(prefix, "bin", "python")
    for rel, module, arg in zip(SHARED, ("netfo.manpage", "netfo.completion", "netfo.completion"),
                                ("", "bash", "zsh")):
        path = os.path.join(prefix, "share", rel)
        assert os.path.isfile(path), rel
        now = subprocess.run([py, "-I", "-m", module, *([arg] if arg else [])], cwd="/",
                             capture_output=True, text=True, check=True).stdout
        with open(path) as f:
            shipped = f.read()
        if rel.endswith(".8"):                  # all but the build date
            shipped, now = (t.split("\n", 1)[1] for t in (shipped, now))
        assert shipped == now, rel
    page = os.path.join(prefix, "share", SHARED[0])
    p = subprocess.run(["man", "-l", page], capture_output=True, text=True,
                       env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0"})
    text = re.sub(".\x08", "", p.stdout)              # no overstrike bold
    assert p.returncode == 0 and p.stderr == "" and "netfo restart [--queues N] IFNAME" in text, p.stderr
    # the README's linking step, into a scratch /usr/local/share
    dest = tmp_path / "share"
    for rel in SHARED:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.join(prefix, "share", rel), dest / rel)
    p = subprocess.run(["bash", "--norc", "-c", f"source {dest / SHARED[1]}; complete -p netfo"],
                       capture_output=True, text=True)
    assert p.stdout == "complete -F _netfo netfo\n", p.stderr
