"""One QEMU guest on a host bridge, driven over QMP, commanded over a serial port.

    peer ns (nfvm<id>-pe)         switch ns (nfvm<id>-sw): QEMU runs here
    pe0 192.168.77.1 ------- port0 -+- br0 -+- tapv: virtio-net-pci (root port rp1)
                                            +- tapf: e1000e, the "VF" (root port rp2)

Both guest NICs have one MAC. mode "kernel" gives the virtio NIC failover=on
and the e1000e failover_pair_id (the kernel's net_failover); mode "netfo"
gives plain NICs. The VF is always added over QMP while QEMU is paused (-S):
QEMU 7.2 refuses to re-plug a failover primary given with -device after a
device_del ("Duplicate ID"). TCG, since /dev/kvm here cannot run stock kernels;
taps with vhost=off (no /dev/vhost-net).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import image

MAC = "52:54:00:77:00:02"
GUEST_IP4, PEER_IP4 = "192.168.77.2", "192.168.77.1"
GUEST_IP6, PEER_IP6 = "fd00:77::2", "fd00:77::1"
VIRTIO_ID, VF_ID = "virtio0", "vf0"
BOOT_TIMEOUT = 180


class VmError(Exception):
    """The guest or QEMU failed; one line, with the console's last words if any."""


def _sh(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and p.returncode:
        raise VmError(f"{' '.join(argv)}: {p.stderr.strip() or p.returncode}")
    return p


def qemu_binary() -> str | None:
    return shutil.which("qemu-system-x86_64")


class _Lines:
    """JSON lines from a unix stream socket, with a deadline per read."""

    def __init__(self, path: Path, deadline: float) -> None:
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise VmError(f"QEMU did not open {path.name}") from None
                time.sleep(0.05)
        self.buf = b""

    def read(self, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError from None
            if not chunk:
                raise VmError("QEMU closed the socket (did it exit?)")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:              # console noise on the agent's port before it started
            return {}

    def write(self, obj: dict) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def close(self) -> None:
        self.sock.close()


class Qmp:
    """Commands and events; an event is kept with the host's monotonic time it arrived."""

    def __init__(self, path: Path) -> None:
        self.lines = _Lines(path, time.monotonic() + 10)
        self.events: list[tuple[float, dict]] = []
        self.lines.read(10)                      # the greeting
        self.execute("qmp_capabilities")

    def _next(self, timeout: float) -> dict:
        msg = self.lines.read(timeout)
        if "event" in msg:
            self.events.append((time.monotonic(), msg))
        return msg

    def execute(self, command: str, **arguments) -> object:
        self.lines.write({"execute": command, **({"arguments": arguments} if arguments else {})})
        while True:
            msg = self._next(30)
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise VmError(f"QMP {command}: {msg['error'].get('desc', msg['error'])}")

    def wait_event(self, name: str, timeout: float, device: str | None = None) -> float:
        """Host time the event arrived (already arrived ones count)."""
        end = time.monotonic() + timeout
        while True:
            for i, (t, ev) in enumerate(self.events):
                if ev["event"] == name and (device is None or
                                            ev.get("data", {}).get("device") == device):
                    del self.events[i]
                    return t
            try:
                self._next(max(0.01, end - time.monotonic()))
            except TimeoutError:
                raise VmError(f"no {name} from QEMU within {timeout:g} s") from None


class Agent:
    """bench.vm.agent in the guest, over the second serial port."""

    def __init__(self, path: Path) -> None:
        self.lines = _Lines(path, time.monotonic() + 10)
        self.n = 0

    def _until(self, match, timeout: float, what: str) -> dict:
        end = time.monotonic() + timeout
        while True:
            try:
                msg = self.lines.read(max(0.01, end - time.monotonic()))
            except TimeoutError:
                raise VmError(f"the guest did not {what} within {timeout:g} s") from None
            if match(msg):
                return msg

    def wait_ready(self, timeout: float) -> float:
        return self._until(lambda m: m.get("event") == "ready", timeout, "start")["uptime"]

    def call(self, op: str, timeout: float = 150, **kw) -> dict:
        self.n += 1
        self.lines.write({"id": self.n, "op": op, **kw})
        msg = self._until(lambda m: m.get("id") == self.n, timeout, f"answer {op}")
        if "error" in msg:
            raise VmError(f"guest {op}: {msg['error']}")
        return msg

    def run(self, *argv: str, check: bool = True, timeout: float = 120) -> dict:
        r = self.call("run", argv=list(argv), timeout=timeout + 5)
        if check and r["rc"]:
            raise VmError(f"guest: {' '.join(argv)}: {(r['err'] or r['out']).strip()[-300:]}")
        return r


class Vm:
    """A booted guest (context manager); all it made goes on exit, also on errors."""

    def __init__(self, kernel: image.Kernel, mode: str, ipv6: bool = False,
                 smp: int = 2, log=print) -> None:
        assert mode in ("netfo", "kernel")
        self.kernel, self.mode, self.ipv6, self.smp, self.log = kernel, mode, ipv6, smp, log
        tag = f"nfvm{os.getpid() % 100000}{mode[0]}"
        self.sw, self.peer = f"{tag}-sw", f"{tag}-pe"
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.qmp: Qmp | None = None
        self.agent: Agent | None = None
        self.boot_s = 0.0

    # ---------------------------------------------------------------- setup
    def __enter__(self) -> "Vm":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _network(self) -> None:
        for ns in (self.sw, self.peer):
            _sh(["ip", "netns", "add", ns])
        sw = ["ip", "-n", self.sw]
        _sh([*sw, "link", "add", "br0", "type", "bridge"])
        for tap in ("tapv", "tapf"):
            _sh([*sw, "tuntap", "add", tap, "mode", "tap"])
            _sh([*sw, "link", "set", tap, "master", "br0", "up"])
        _sh([*sw, "link", "add", "port0", "type", "veth", "peer", "pe0", "netns", self.peer])
        _sh([*sw, "link", "set", "port0", "master", "br0", "up"])
        _sh([*sw, "link", "set", "br0", "up"])
        pe = ["ip", "-n", self.peer]
        _sh([*pe, "link", "set", "lo", "up"])
        _sh([*pe, "addr", "add", f"{PEER_IP4}/24", "dev", "pe0"])
        _sh([*pe, "-6", "addr", "add", f"{PEER_IP6}/64", "dev", "pe0", "nodad"])
        _sh([*pe, "link", "set", "pe0", "up"])

    def _argv(self) -> list[str]:
        d = self.dir
        failover = ",failover=on" if self.mode == "kernel" else ""
        return [
            "ip", "netns", "exec", self.sw, qemu_binary(),
            "-name", f"netfo-vm-{self.mode}", "-S", "-no-user-config", "-nodefaults",
            "-machine", "q35", "-accel", "tcg,thread=multi", "-smp", str(self.smp), "-m", "1024",
            "-display", "none", "-no-reboot",
            "-kernel", str(self.kernel.vmlinuz), "-initrd", str(d / "initrd.gz"),
            "-append", "console=ttyS0 panic=-1 quiet loglevel=4",
            "-serial", f"file:{d / 'console.log'}",
            "-serial", f"unix:{d / 'agent.sock'},server=on,wait=off",
            "-qmp", f"unix:{d / 'qmp.sock'},server=on,wait=off",
            "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on",
            "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
            "-fsdev", f"local,id=xfer,path={d / 'xfer'},security_model=none",
            "-device", "virtio-9p-pci,fsdev=xfer,mount_tag=xfer",
            "-device", "pcie-root-port,id=rp1,chassis=1",
            "-device", "pcie-root-port,id=rp2,chassis=2",
            "-netdev", "tap,id=nv,ifname=tapv,script=no,downscript=no,vhost=off",
            "-device", f"virtio-net-pci,netdev=nv,mac={MAC},id={VIRTIO_ID},bus=rp1{failover}",
            "-netdev", "tap,id=nf,ifname=tapf,script=no,downscript=no,vhost=off",
        ]

    def _start(self) -> None:
        if qemu_binary() is None:
            raise VmError("qemu-system-x86_64 not found: apt-get install qemu-system-x86")
        self.dir = Path(tempfile.mkdtemp(prefix="nfvm-"))
        (self.dir / "xfer").mkdir()
        image.initramfs(self.kernel, self.dir / "initrd.gz")
        self._start_script()
        self._network()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "qemu.err", "wb"))
        self.qmp = Qmp(self.dir / "qmp.sock")
        self.agent = Agent(self.dir / "agent.sock")
        self.plug()                         # while paused: see the module's doc
        self.qmp.execute("cont")
        try:
            self.agent.wait_ready(BOOT_TIMEOUT)
        except VmError as e:
            raise VmError(f"{e}; {self.last_words()}") from None
        self.boot_s = time.monotonic() - t0

    def _start_script(self) -> None:
        """Run by the guest's init in the chroot: modules, sysctls, the agent."""
        import netfo
        src = {str(Path(netfo.__file__).resolve().parent.parent),
               str(Path(__file__).resolve().parents[2])}
        mods = " ".join(image.NET_MODULES)
        v6 = "0" if self.ipv6 else "1"
        (self.dir / "xfer" / "start").write_text(f"""\
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/run/tmp TMPDIR=/run/tmp
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH={':'.join(sorted(src))}
cd /run/tmp
for m in {mods}; do {self.kernel.modprobe} $m || echo "start: modprobe $m failed"; done
sysctl -qw net.ipv6.conf.all.disable_ipv6={v6} net.ipv6.conf.default.disable_ipv6={v6}
ip link set lo up
exec {sys.executable} -m bench.vm.agent /dev/ttyS1 >/dev/ttyS0 2>&1
""")

    def last_words(self) -> str:
        try:
            tail = (self.dir / "console.log").read_text(errors="replace").strip().splitlines()[-3:]
            err = (self.dir / "qemu.err").read_text(errors="replace").strip().splitlines()[-2:]
        except OSError:
            return "no console"
        return "console: " + " | ".join(tail + err)

    def close(self) -> None:
        from ..runner import shielded
        with shielded():
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            for c in (self.qmp, self.agent):
                if c is not None:
                    c.lines.close()
            for ns in (self.peer, self.sw):
                _sh(["ip", "netns", "del", ns], check=False)
            if self.dir is not None and not os.environ.get("NETFO_VM_KEEP"):
                shutil.rmtree(self.dir, ignore_errors=True)

    # --------------------------------------------------------------- events
    def plug(self) -> None:
        pair = {"failover_pair_id": VIRTIO_ID} if self.mode == "kernel" else {}
        self.qmp.execute("device_add", driver="e1000e", netdev="nf", mac=MAC, id=VF_ID,
                         bus="rp2", **pair)

    def unplug(self, wait: bool = True) -> float | None:
        self.qmp.execute("device_del", id=VF_ID)
        return self.qmp.wait_event("DEVICE_DELETED", 30, VF_ID) if wait else None

    def set_virtio_link(self, up: bool) -> None:
        self.qmp.execute("set_link", name=VIRTIO_ID, up=up)

    def peer_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.peer, *argv]
