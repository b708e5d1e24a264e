"""A real DHCP server for lab tests: dnsmasq on the peer's eth0, with its
own lease, pid and log files, no DNS and no system configuration."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from typing import Optional


def wait_for(pred, timeout: float, what: str, interval: float = 0.1):
    """pred()'s first true value, or AssertionError after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Dnsmasq:
    """Leases from 192.168.12.100-150 (or `host`: a fixed (MAC, IP)) for
    `lease`; `options` are further --dhcp-option values (e.g. T1)."""

    def __init__(self, lab, lease: str = "1h", host: Optional[tuple] = None,
                 options: tuple = (), ifname: str = "eth0"):
        self.dir = tempfile.mkdtemp(prefix=f"dnsmasq-{lab.prefix}-")
        self.log = os.path.join(self.dir, "dnsmasq.log")
        argv = ["dnsmasq", "--conf-file=/dev/null", "--keep-in-foreground", "--port=0",
                f"--interface={ifname}", "--bind-interfaces", "--log-dhcp",
                f"--log-facility={self.log}", f"--pid-file={self.dir}/dnsmasq.pid",
                f"--dhcp-leasefile={self.dir}/leases",
                f"--dhcp-range=192.168.12.100,192.168.12.150,255.255.255.0,{lease}"]
        if host is not None:
            argv.append(f"--dhcp-host={host[0]},{host[1]},{lease}")
        argv += [f"--dhcp-option={o}" for o in options]
        self.proc = lab.popen("peer", *argv, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: "started" in self.read() or self.proc.poll() is not None, 10,
                     "dnsmasq to start")
            if self.proc.poll() is not None:
                raise AssertionError(f"dnsmasq exited {self.proc.returncode}: "
                                     f"{self.proc.stderr.read().decode(errors='replace')}")
        except BaseException:
            self.stop()
            raise

    def read(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def events(self) -> list:
        """(kind, address, MAC) of each DHCP request and answer logged so far."""
        return re.findall(r"(DHCP[A-Z]+)\(\S+\) (\S+) ([0-9a-f:]{17})", self.read())

    def acks(self, ip: str) -> int:
        """DHCPACKs sent for ip so far."""
        return sum(1 for kind, addr, _ in self.events() if kind == "DHCPACK" and addr == ip)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
