"""Real systemd-networkd and a real DHCP server (dnsmasq) in a lab's namespaces.

networkd runs in the guest's network namespace inside a private mount and UTS
namespace: tmpfs on /run (its state files, and a private system bus: networkctl
252 talks to networkd over D-Bus) and on /etc/systemd/network (the test's
.network files), /sys remounted read-only so that networkd does not wait for a
udev that does not run here (it then reads the driver with ethtool itself, as
in a container), and its own hostname (it sets the one a lease carries over
D-Bus; whatever it does, the machine's stays). Nothing of this is seen outside
the namespace; the mounts go with the last process in it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from support.dnsmasq import wait_for

NETWORKD = "/lib/systemd/systemd-networkd"
NEEDED = (NETWORKD, "networkctl", "dbus-daemon", "dnsmasq", "nsenter", "unshare")

# One shell: mounts, a private system bus, networkd; both in the shell's
# process group, which stop() signals.
SCRIPT = """set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/dbus /run/systemd
mount -t tmpfs tmpfs /etc/systemd/network
cp "$1"/* /etc/systemd/network/
mount -o remount,ro /sys
dbus-daemon --system --nofork --nopidfile &
SYSTEMD_LOG_LEVEL=debug SYSTEMD_LOG_TARGET=console {networkd} &
wait
"""


def missing() -> list[str]:
    return [p for p in NEEDED if not shutil.which(p) and not os.access(p, os.X_OK)]


class Networkd:
    """systemd-networkd in the lab's guest namespace with the given .network
    files ({name: text}); its debug log in `logfile`."""

    def __init__(self, lab, files: dict[str, str], role: str = "guest"):
        self.lab = lab
        self.conf = tempfile.mkdtemp(prefix=f"networkd-{lab.prefix}-")
        for name, text in files.items():
            with open(os.path.join(self.conf, name), "w") as f:
                f.write(text)
        self.logfile = f"/tmp/networkd-{lab.prefix}.log"
        with open(self.logfile, "w") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", lab.namespaces[role], "unshare", "-m", "-u",
                 "--propagation", "private", "sh", "-c",
                 SCRIPT.format(networkd=NETWORKD), "sh", self.conf],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait_for(self._answers, 20, "networkctl to answer")

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"networkd exited {self.proc.returncode}: {self.tail()}")
        try:
            return bool(self.links())
        except (AssertionError, ValueError):
            return False

    def networkctl(self, *argv: str) -> str:
        """networkctl in networkd's own mount and network namespace."""
        p = subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "-n",
                            "networkctl", "--no-pager", *argv],
                           capture_output=True, text=True, timeout=20)
        if p.returncode:
            raise AssertionError(f"networkctl {' '.join(argv)}: {p.stderr.strip()}")
        return p.stdout

    def links(self) -> dict[str, dict]:
        """`networkctl --json=short list` by interface name."""
        got = json.loads(self.networkctl("--json=short", "list"))
        return {i["Name"]: i for i in got.get("Interfaces", [])}

    def state(self, ifname: str) -> str | None:
        return self.links().get(ifname, {}).get("AdministrativeState")

    def tail(self, n: int = 15) -> str:
        try:
            with open(self.logfile, errors="replace") as f:
                return " | ".join(l.strip() for l in f.read().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM to the shell's process group (networkd, its bus), then
        SIGKILL; networkd leaves the links' configuration as it is."""
        pgid = self.proc.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                self.proc.poll()
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self.conf, ignore_errors=True)
