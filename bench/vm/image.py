"""The guest's kernel and initramfs, built from Debian packages and cached.

Why this shape: /dev/kvm here is PVM, so the guest runs under TCG, where a
stock Debian kernel boots in seconds and a disk image would be slow to build
and to read. The guest has no disk: a busybox initramfs mounts the host's root
read-only over 9p and chroots into it, so the guest runs the host's Python and
the checkout's netfo. Modules the guest loads after that come from the
extracted package through the host's modprobe (`modprobe -d`), which the
kernel also calls for on-demand loads (nft expressions, ...).
"""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("NETFO_VM_CACHE", "/var/cache/netfo-vm"))
# Loaded by the initramfs: what mounting the root over 9p needs.
ROOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
# Loaded in the chroot, in this order: nf_tables wants crc32c (a soft
# dependency modules.dep does not carry); the NIC drivers last, so the NICs
# appear once everything they may meet is there.
NET_MODULES = ("crc32c_generic", "nf_tables", "tun", "sch_ingress",
               "failover", "net_failover", "virtio_net", "e1000e")
BUSYBOX = "/bin/busybox"


class ImageError(Exception):
    """The guest cannot be prepared; one line, says what to install or do."""


@dataclass
class Kernel:
    version: str        # e.g. 6.1.0-57-amd64
    root: Path          # extracted package: boot/, lib/modules/<version>/

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.version}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.version

    @property
    def modprobe(self) -> Path:
        """The kernel's modprobe helper in the guest (a path on the shared root)."""
        return self.root / "modprobe"


# the Debian package of each tool the image needs that a minimal host may lack
PACKAGE = {"depmod": "kmod", "dpkg-deb": "dpkg", "apt-get": "apt", "apt-cache": "apt"}


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    try:
        p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ImageError(f"{argv[0]} not found: apt-get install "
                         f"{PACKAGE.get(argv[0], argv[0])}") from None
    if p.returncode:
        last = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:] or ["?"]
        raise ImageError(f"{' '.join(argv[:3])} failed: {last[0]}")
    return p.stdout


def kernel_package() -> str:
    """The versioned package linux-image-amd64 points at (the newest 6.1 on bookworm)."""
    out = _run(["apt-cache", "depends", "linux-image-amd64"])
    for line in out.splitlines():
        dep = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and dep.startswith("linux-image-"):
            return dep
    raise ImageError("apt-cache knows no linux-image-amd64: run apt-get update "
                     "(a Debian bookworm source is needed)")


def kernel(log=print) -> Kernel:
    """Download and extract the guest kernel once; later calls reuse the cache."""
    if shutil.which("dpkg-deb") is None or shutil.which("apt-get") is None:
        raise ImageError("apt-get and dpkg-deb are needed to fetch the guest kernel (Debian host)")
    pkg = kernel_package()
    version = pkg.removeprefix("linux-image-")
    k = Kernel(version, CACHE / version)
    if (k.root / ".done").exists():
        return k
    log(f"vm: fetching {pkg} into {k.root}")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=CACHE))
    try:
        _run(["apt-get", "download", "-q", pkg], cwd=tmp)
        debs = list(tmp.glob("*.deb"))
        if not debs:
            raise ImageError(f"apt-get download {pkg} left no .deb")
        _run(["dpkg-deb", "-x", str(debs[0]), str(tmp / "root")])
        debs[0].unlink()
        _run(["depmod", "-b", str(tmp / "root"), version])
        shutil.rmtree(k.root, ignore_errors=True)
        os.rename(tmp / "root", k.root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    k.modprobe.write_text(f"#!/bin/sh\nexec /sbin/modprobe -d {k.root} \"$@\"\n")
    k.modprobe.chmod(0o755)
    (k.root / ".done").touch()
    return k


def load_order(k: Kernel, wanted: tuple[str, ...]) -> list[str]:
    """Module files (relative to k.modules) to insmod for `wanted`, dependencies
    first, each once; built-in modules are skipped."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (k.modules / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[Path(path).name.split(".ko")[0].replace("-", "_")] = path
    builtin = {Path(l).name.split(".ko")[0].replace("-", "_")
               for l in (k.modules / "modules.builtin").read_text().split()}
    order: list[str] = []

    def add(path: str) -> None:
        if path in order:
            return
        for d in reversed(deps[path]):       # modules.dep lists the deepest last
            add(d)
        order.append(path)
    for name in wanted:
        name = name.replace("-", "_")
        if name in builtin:
            continue
        if name not in by_name:
            raise ImageError(f"module {name} is not in {k.version}")
        add(by_name[name])
    return order


INIT = """#!/bin/busybox sh
# The guest's pid 1: modules for the 9p root, then the host's root (read-only)
# with the guest's own /proc, /sys, /dev and a tmpfs /run (TMPDIR is
# /run/tmp), then the agent. The host's /tmp stays visible: the checkout and
# its venv may be there (CI clones into /tmp).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.list); do insmod /modules/$m || echo "init: insmod $m failed"; done
O=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $O,ro,cache=loose hostroot /root || { echo "init: no 9p root"; poweroff -f; }
for d in proc sys dev; do mount --move /$d /root/$d; done
mount -t tmpfs -o mode=755 run /root/run
mkdir -p /root/run/xfer /root/run/lock /root/run/tmp
chmod 1777 /root/run/tmp
mount -t 9p -o $O xfer /root/run/xfer || { echo "init: no xfer share"; poweroff -f; }
mkdir -p /root/dev/pts /root/dev/shm
mount -t devpts devpts /root/dev/pts
mount -t tmpfs shm /root/dev/shm
# what udev would add: nft -f - reads /dev/stdin
ln -s /proc/self/fd /root/dev/fd
for i in 0:stdin 1:stdout 2:stderr; do ln -s /proc/self/fd/${i%%:*} /root/dev/${i#*:}; done
echo {modprobe} > /root/proc/sys/kernel/modprobe
exec chroot /root /bin/sh /run/xfer/start
"""


def initramfs(k: Kernel, out: Path) -> Path:
    """A gzip'd newc cpio: busybox, /init, the 9p modules (built per boot: ~0.2 s)."""
    check_busybox()
    with tempfile.TemporaryDirectory(prefix="nfvm-initrd-") as d:
        t = Path(d)
        for sub in ("bin", "proc", "sys", "dev", "root", "modules"):
            (t / sub).mkdir()
        shutil.copy2(BUSYBOX, t / "bin" / "busybox")
        mods = load_order(k, ROOT_MODULES)
        for m in mods:
            dst = t / "modules" / m
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(k.modules / m, dst)
        (t / "modules.list").write_text("\n".join(mods) + "\n")
        init = t / "init"
        init.write_text(INIT.replace("{modprobe}", str(k.modprobe)))
        init.chmod(0o755)
        names = subprocess.run(["/bin/busybox", "find", "."], cwd=t, capture_output=True,
                               check=True).stdout
        cpio = subprocess.run(["/bin/busybox", "cpio", "-o", "-H", "newc"], cwd=t, input=names,
                              capture_output=True, check=True).stdout
    out.write_bytes(gzip.compress(cpio, 1))
    return out


def check_busybox() -> None:
    if not Path(BUSYBOX).exists() or not _is_static(BUSYBOX):
        raise ImageError(f"{BUSYBOX} is not a static busybox: apt-get install busybox-static")


def _is_static(path: str) -> bool:
    """No ELF interpreter: ldd says so (file(1) may be absent)."""
    p = subprocess.run(["ldd", path], capture_output=True, text=True)
    return p.returncode != 0 or "not a dynamic" in (p.stdout + p.stderr)
