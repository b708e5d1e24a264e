"""Open vSwitch's userspace datapath as the failover master, inside the guest.

The setup people would reach for instead of netfo: ovsdb-server and
ovs-vswitchd with a netdev (userspace) bridge, its internal port named like
the master, and an active-backup bond of the VF and the virtio NIC with the
VF as primary.  OVS reads the slaves with AF_PACKET sockets and the internal
port through a TAP - netfo's design, in C.  The daemons run inside the guest
namespace with a private database and run directory, so nothing touches the
host's OVS (if any); no kernel module is needed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

from netfo.lab import MAC, VF_IF, Lab

from .measure import stop

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
DAEMONS = ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovsdb-tool")


def missing() -> str | None:
    """Why OVS cannot run here, or None."""
    absent = [d for d in DAEMONS if shutil.which(d) is None]
    if absent:
        return f"{', '.join(absent)} not found (apt-get install openvswitch-switch)"
    if not os.path.exists(SCHEMA):
        return f"{SCHEMA} not found"
    return None


class OVS:
    """`with OVS(lab, master, standby, tso) as ovs:` - ovs.pid is ovs-vswitchd's."""

    def __init__(self, lab: Lab, master: str, standby: str, tso: bool) -> None:
        self.lab, self.master, self.standby, self.tso = lab, master, standby, tso
        self.dir = ""
        self.procs: list[subprocess.Popen] = []
        self.pid: int | None = None

    def _env(self) -> dict:
        # Every file OVS would put under /var/run, /var/log or /etc goes here.
        return dict(os.environ, OVS_RUNDIR=self.dir, OVS_LOGDIR=self.dir,
                    OVS_DBDIR=self.dir, OVS_SYSCONFDIR=self.dir)

    def vsctl(self, *args: str) -> None:
        self.lab.run("guest", "ovs-vsctl", f"--db=unix:{self.dir}/db.sock", "--timeout=20", *args,
                     timeout=30)

    def _daemon(self, *argv: str) -> subprocess.Popen:
        name = argv[0]
        proc = self.lab.popen("guest", *argv, f"--unixctl={self.dir}/{name}.ctl",
                              f"--log-file={self.dir}/{name}.log", f"--pidfile={self.dir}/{name}.pid",
                              env=self._env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
        self.procs.append(proc)
        return proc

    def log_tail(self, name: str = "ovs-vswitchd", lines: int = 3) -> str:
        try:
            with open(f"{self.dir}/{name}.log") as f:
                return " | ".join(l.strip() for l in f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "OVS":
        self.dir = tempfile.mkdtemp(prefix="netfo-bench-ovs-")
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        subprocess.run(["ovsdb-tool", "create", f"{self.dir}/conf.db", SCHEMA], check=True,
                       capture_output=True)
        self._daemon("ovsdb-server", f"{self.dir}/conf.db", f"--remote=punix:{self.dir}/db.sock")
        deadline = time.monotonic() + 10
        while not os.path.exists(f"{self.dir}/db.sock"):
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise RuntimeError(f"ovsdb-server did not start: {self.log_tail('ovsdb-server')}")
            time.sleep(0.05)
        self.vsctl("--no-wait", "init")
        if self.tso:
            # Read once at start-up: it must be in the database before vswitchd runs.
            self.vsctl("--no-wait", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true")
        vswitchd = self._daemon("ovs-vswitchd", f"unix:{self.dir}/db.sock")
        self.pid = vswitchd.pid
        # The bridge's internal port is named after the bridge: it is the master.
        self.vsctl("add-br", self.master, "--", "set", "bridge", self.master, "datapath_type=netdev",
                   f"other-config:hwaddr={MAC}")
        self.vsctl("add-bond", self.master, "bond0", VF_IF, self.standby, "bond_mode=active-backup",
                   f"other_config:bond-primary={VF_IF}")
        if vswitchd.poll() is not None:
            raise RuntimeError(f"ovs-vswitchd exited: {self.log_tail()}")

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):      # vswitchd first, then the database
            stop(proc)
        self.procs.clear()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
