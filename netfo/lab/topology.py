"""A network-namespace lab that reproduces the hypervisor setup of the kernel's
net_failover document (Documentation/networking/net_failover.rst).

Why: netfo re-creates net_failover in userspace, and it has to be exercised
against the events a real VM sees during the document's live migration: the
virtio NIC losing/gaining carrier (``virsh domif-setlink``), the VF vanishing
(``virsh detach-device``) and a new VF with the same MAC appearing
(``virsh attach-device``). Each NIC is a veth pair; the end in the guest
namespace is what the VM sees, the far end is the hypervisor's side::

    guest ns             src ns (source hypervisor)        dst ns (destination)
    ens10 (virtio) ----- tap01     -+
    ens11 (VF)     ----- enp66s0f0 -+- enp66s0f0_br        enp66s0f0_br
                                    +- uplink ------------ uplink
    peer ns: eth0 ------ peer0     -+

Carrier in the guest follows the admin state of the far end (a veth has
carrier only while both ends are up), which is how ``domif-setlink`` is
emulated. Nothing here imports the rest of netfo, and all state is derived
from the namespaces, so a later process can drive a lab an earlier one built.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from typing import Callable

MAC = "52:54:00:00:12:53"
ZERO_MAC = "00:00:00:00:00:00"
GUEST_IP4, PEER_IP4 = "192.168.12.53", "192.168.12.1"
GUEST_IP6, PEER_IP6 = "fd00:12::53", "fd00:12::1"
ROUTED_NET = "198.51.100.0/24"      # reached via the peer: gives a route to move
BRIDGE = "enp66s0f0_br"             # <source network='enp66s0f0_br'/>
TAP = "tap01"                       # <target dev='tap01'/>: virtio backend
PF = "enp66s0f0"                    # switch side of the VF ($PF in the script)
VIRTIO_IF, VF_IF = "ens10", "ens11"  # the guest's names, as in the document
UPLINK, PEER_PORT, PEER_IF = "uplink", "peer0", "eth0"
# 300 s, the bridge default, set explicitly: stale entries must live long
# enough that the document's `bridge fdb del` step matters.
AGEING_CS = 30000
# The hypervisor-side veth ends get ifindexes no guest link has. A veth's
# iflink is its peer's ifindex in the peer's namespace; when that equals its
# own, linkwatch takes it for a plain NIC and may hold its carrier change up
# to a second (not urgent), and the bridge enables the port only then: a
# re-plugged VF's port stayed disabled 0.2-0.9 s in one demo run in six.
IFINDEX = {"tap01": 201, "enp66s0f0": 202, "uplink": 203, "peer0": 204}
SIDES = ("src", "dst")
NETNS_DIR = "/var/run/netns"        # where `ip netns add` puts its bind mounts


class LabError(Exception):
    """A lab operation failed; the message is one line, fit for users."""


class Lab:
    """The four namespaces of one lab, named after ``prefix``.

    Different prefixes give independent labs: interface names only live
    inside the lab's own namespaces, so labs can coexist.
    """

    def __init__(self, prefix: str = "nfo", wire_like: bool = False,
                 log: Callable[[str], object] = print, vf_gro: bool = False) -> None:
        """wire_like: the peer sends MTU-sized frames with full checksums, as
        on a wire. vf_gro: the guest's VF merges them (GRO, as a real VF
        driver does before AF_PACKET sees the frames)."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", prefix):
            raise LabError(f"bad lab prefix {prefix!r}: use letters, digits, '_', '.', '-'")
        self.prefix, self.wire_like, self.log = prefix, wire_like, log
        self.vf_gro = vf_gro
        self.guest, self.src = f"{prefix}-guest", f"{prefix}-src"
        self.dst, self.peer = f"{prefix}-dst", f"{prefix}-peer"

    @property
    def namespaces(self) -> dict[str, str]:
        """Role -> namespace name; "src"/"dst" double as the `side` arguments."""
        return {"guest": self.guest, "src": self.src, "dst": self.dst, "peer": self.peer}

    # ----------------------------------------------------------- plumbing
    def _cmd(self, argv: list[str], check: bool = True, capture: bool = True,
             timeout: float = 30) -> subprocess.CompletedProcess:
        """Run argv; failures become a one-line LabError instead of a traceback."""
        try:
            p = subprocess.run(argv, capture_output=capture, text=True, timeout=timeout)
        except FileNotFoundError:
            raise LabError(f"{argv[0]}: command not found") from None
        except subprocess.TimeoutExpired:
            raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from None
        if check and p.returncode:
            err = (p.stderr or "").strip().splitlines() if capture else []
            raise LabError(f"`{' '.join(argv)}` failed: {err[-1] if err else f'exit {p.returncode}'}")
        return p

    def _ip(self, role: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`ip -n NS ...`: cheaper than `ip netns exec` (no mount namespace)."""
        return self._cmd(["ip", "-n", self.namespaces[role], *args], check=check)

    def run(self, ns: str, *argv: str, check: bool = True, capture: bool = True,
            timeout: float = 30) -> subprocess.CompletedProcess:
        """`ip netns exec ns argv...`; ns is a role ("guest") or a full name.

        With check, a non-zero exit raises LabError (not CalledProcessError)."""
        return self._cmd(["ip", "netns", "exec", self.namespaces.get(ns, ns), *argv],
                         check=check, capture=capture, timeout=timeout)

    def popen(self, ns: str, *argv: str, **kw) -> subprocess.Popen:
        """Start a long-running process (watcher, pinger) inside a namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.namespaces.get(ns, ns), *argv], **kw)

    def _sysctl(self, role: str, *settings: str) -> None:
        self.run(role, "sysctl", "-q", "-w", *settings)

    def _links(self, role: str) -> list[dict]:
        """Parsed `ip -j link` of a namespace; [] if the namespace is gone."""
        if not os.path.exists(os.path.join(NETNS_DIR, self.namespaces[role])):
            return []
        p = self._ip(role, "-j", "link", "show", check=False)
        return json.loads(p.stdout or "[]") if p.returncode == 0 else []

    def _link(self, role: str, ifname: str) -> dict | None:
        return next((l for l in self._links(role) if l.get("ifname") == ifname), None)

    def _where(self, ifname: str) -> str | None:
        """Which hypervisor side holds ifname now (derived, never cached)."""
        return next((s for s in SIDES if self._link(s, ifname)), None)

    def _timed(self, doc: str, fn: Callable[[], str]) -> float:
        """Run one step, log "document command: what we did (ms)", return seconds."""
        t0 = time.monotonic()
        what = fn()
        dt = time.monotonic() - t0
        self.log(f"[{self.prefix}] {doc}: {what} ({dt * 1000:.1f} ms)")
        return dt

    # ------------------------------------------------------- build / tear down
    def exists(self) -> bool:
        """True if any namespace of this lab exists (a partial lab still needs down())."""
        return any(os.path.exists(os.path.join(NETNS_DIR, n)) for n in self.namespaces.values())

    def up(self) -> None:
        """Build the whole lab; on failure remove what was made and raise LabError."""
        taken = [n for n in self.namespaces.values() if os.path.exists(os.path.join(NETNS_DIR, n))]
        if taken:
            raise LabError(f"lab {self.prefix!r} already exists (namespace {', '.join(taken)}); run down first")
        created: list[str] = []
        try:
            for name in self.namespaces.values():
                self._cmd(["ip", "netns", "add", name])
                created.append(name)
            self._build()
        except BaseException as e:
            for name in created:   # only ours: a racing creator keeps its namespace
                self._remove_ns(name)
            if isinstance(e, LabError) or not isinstance(e, Exception):
                raise
            raise LabError(f"lab up failed: {e}") from e
        self.log(f"[{self.prefix}] lab up: {', '.join(self.namespaces.values())}")

    def _build(self) -> None:
        # Hypervisors must emit nothing (no RS/MLD/ND from bridges or ports), so
        # IPv6 is off there; `default` covers links created or moved in later.
        for side in SIDES:
            self._sysctl(side, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        # Endpoints: addresses usable at once, no DAD (also on auto link-locals).
        for role in ("guest", "peer"):
            self._sysctl(role, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        for role in self.namespaces:
            self._ip(role, "link", "set", "lo", "up")
        for side in SIDES:
            # STP off + forward_delay 0: ports forward the moment they are up.
            # Snooping off: multicast (ND) is flooded, whatever port moves.
            self._ip(side, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0",
                     "forward_delay", "0", "ageing_time", str(AGEING_CS), "mcast_snooping", "0")
            self._ip(side, "link", "set", BRIDGE, "up")
        # Guest ends are born in the guest with their final name and MAC, so a
        # watcher there never sees a transient name or address.
        self._ip("src", "link", "add", TAP, "index", str(IFINDEX[TAP]), "type", "veth",
                 "peer", "name", VIRTIO_IF, "netns", self.guest, "address", MAC)
        self._ip("src", "link", "add", PF, "index", str(IFINDEX[PF]), "type", "veth",
                 "peer", "name", VF_IF, "netns", self.guest, "address", MAC)
        self._ip("src", "link", "add", UPLINK, "index", str(IFINDEX[UPLINK]), "type", "veth",
                 "peer", "name", UPLINK, "netns", self.dst)
        self._ip("src", "link", "add", PEER_PORT, "index", str(IFINDEX[PEER_PORT]), "type", "veth",
                 "peer", "name", PEER_IF, "netns", self.peer)
        self._ip("src", "link", "set", TAP, "master", BRIDGE)   # <link state='down'/>: stays down
        for port in (PF, UPLINK, PEER_PORT):
            self._ip("src", "link", "set", port, "master", BRIDGE, "up")
        self._ip("dst", "link", "set", UPLINK, "master", BRIDGE, "up")
        for args in (("link", "set", VIRTIO_IF, "up"), ("link", "set", VF_IF, "up"),
                     ("addr", "add", f"{GUEST_IP4}/24", "dev", VIRTIO_IF),
                     ("addr", "add", f"{GUEST_IP6}/64", "dev", VIRTIO_IF, "nodad"),
                     ("route", "add", ROUTED_NET, "via", PEER_IP4, "dev", VIRTIO_IF)):
            self._ip("guest", *args)
        for args in (("link", "set", PEER_IF, "up"), ("addr", "add", f"{PEER_IP4}/24", "dev", PEER_IF),
                     ("addr", "add", f"{PEER_IP6}/64", "dev", PEER_IF, "nodad")):
            self._ip("peer", *args)
        if self.wire_like:
            if shutil.which("ethtool"):
                # Full-size frames and real checksums on the wire, like a NIC.
                p = self.run("peer", "ethtool", "-K", PEER_IF, "tso", "off", "gso", "off",
                             "gro", "off", "tx", "off", "rx", "off", check=False)
                if p.returncode:
                    self.log(f"[{self.prefix}] warning: ethtool -K {PEER_IF}: {p.stderr.strip()}")
            else:
                self.log(f"[{self.prefix}] warning: wire_like asked but ethtool is not installed")
        if self.vf_gro:
            # veth does GRO only in NAPI mode, which `gro on` turns on (5.13+;
            # before, only an XDP program did), and only for frames from a
            # peer without TSO (veth_skb_is_eligible_for_gro): TSO off on
            # the hypervisor's end too, which a wire never had anyway.
            for role, dev, feature, value in (("src", PF, "tso", "off"), ("guest", VF_IF, "gro", "on")):
                p = self.run(role, "ethtool", "-K", dev, feature, value, check=False)
                if p.returncode:
                    raise LabError(f"vf_gro: ethtool -K {dev} {feature} {value}: {p.stderr.strip()}")

    def _remove_ns(self, name: str) -> None:
        """Kill what runs in a namespace, then delete it; silent if already gone."""
        path = os.path.join(NETNS_DIR, name)
        if not os.path.exists(path):
            return
        # A process left inside would keep the namespace (and its links) alive.
        pids = self._cmd(["ip", "netns", "pids", name], check=False).stdout.split()
        pids = [int(p) for p in pids if p.isdigit() and int(p) != os.getpid()]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 2
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
                time.sleep(0.02)
        p = self._cmd(["ip", "netns", "del", name], check=False)
        if p.returncode and os.path.exists(path):
            raise LabError(f"cannot delete namespace {name}: {p.stderr.strip()}")

    def down(self) -> None:
        """Remove all four namespaces (and so every link in them); idempotent."""
        present = self.exists()
        for name in self.namespaces.values():
            self._remove_ns(name)
        if present:
            self.log(f"[{self.prefix}] lab down")

    def __enter__(self) -> "Lab":
        self.up()
        return self

    def __exit__(self, *exc: object) -> bool:
        self.down()
        return False

    def status(self) -> dict:
        """Namespaces present, their links, and where tap01 / the VF far end are."""
        links = {}
        for role, name in self.namespaces.items():
            links[role] = [{
                "name": l["ifname"], "ifindex": l["ifindex"],
                "admin_up": "UP" in l.get("flags", []),
                "carrier": "LOWER_UP" in l.get("flags", []),
                "operstate": l.get("operstate"), "master": l.get("master"),
                "mac": l.get("address"),
            } for l in self._links(role)]
        vf = next((l for l in links["guest"] if l["name"] == VF_IF), None)
        return {
            "prefix": self.prefix,
            "namespaces": {role: os.path.exists(os.path.join(NETNS_DIR, n))
                           for role, n in self.namespaces.items()},
            "links": links,
            "virtio_backend": self._where(TAP),
            "vf_plugged": vf is not None,
            "vf_ifindex": vf["ifindex"] if vf else None,
            "vf_far_end": self._where(PF),
        }

    # ------------------------------------------------------------ single steps
    def link(self, which: str, state: str) -> float:
        """`virsh domif-setlink`: set the far end's admin state, toggling guest carrier."""
        if which not in ("virtio", "vf") or state not in ("up", "down"):
            raise LabError(f"link: which must be virtio|vf and state up|down, not {which!r} {state!r}")
        ifname = TAP if which == "virtio" else PF
        side = self._where(ifname)
        if side is None:
            raise LabError(f"no {which} backend ({ifname}) in {self.src} or {self.dst}")

        def step() -> str:
            self._ip(side, "link", "set", ifname, state)
            return f"{ifname} in {self.namespaces[side]} {state}"
        return self._timed(f"virsh domif-setlink {ifname if which == 'virtio' else 'vf'} {state}", step)

    def unplug(self) -> float:
        """`virsh detach-device`: the guest's ens11 vanishes, and the veth pair.

        As a hot-unplugged PCI NIC does: closed while its hardware still
        works (the guest driver's remove unregisters it), then gone. So the
        VF is moved out of the guest first, then deleted: deleting a veth
        end detaches its peer before closing it, and frames sent meanwhile
        vanish without an error, which no real NIC's unplug does."""
        if self._link("guest", VF_IF) is None:
            raise LabError(f"no VF plugged: {VF_IF} is not in {self.guest}")
        side = self._where(PF) or "src"

        def step() -> str:
            self._ip("guest", "link", "set", VF_IF, "netns", self.namespaces[side])
            self._ip(side, "link", "del", VF_IF)
            return f"removed {VF_IF} from {self.guest}"
        return self._timed("virsh detach-device $VF_XML", step)

    def plug(self, side: str | None = None, carrier: bool = True) -> float:
        """`virsh attach-device`: a fresh ens11 (new ifindex, MAC) appears, admin down.

        Its far end is `enp66s0f0` on the bridge of `side` (default: where
        the virtio backend is), up, so the guest gets carrier once it is up;
        carrier=False leaves the far end down (a VF whose link is still
        training: `link("vf", "up")` brings its carrier)."""
        side = side or self._where(TAP) or "src"
        if side not in SIDES:
            raise LabError(f"plug: side must be src or dst, not {side!r}")
        if self._link("guest", VF_IF) is not None:
            raise LabError(f"a VF is already plugged ({VF_IF} in {self.guest}); unplug first")

        def step() -> str:
            self._ip(side, "link", "add", PF, "index", str(IFINDEX[PF]), "type", "veth",
                     "peer", "name", VF_IF, "netns", self.guest, "address", MAC)
            try:
                self._ip(side, "link", "set", PF, "master", BRIDGE, *(("up",) if carrier else ()))
            except LabError:
                self._ip(side, "link", "del", PF, check=False)
                raise
            return f"new {VF_IF} in {self.guest}, far end {PF} on {BRIDGE} in {self.namespaces[side]}"
        return self._timed("virsh attach-device $VF_XML", step)

    def fdb_del(self) -> float:
        """`bridge fdb del $MAC dev $PF master` on the side where the VF port is now."""
        side = self._where(PF) or "src"

        def step() -> str:
            p = self._cmd(["bridge", "-n", self.namespaces[side], "fdb", "del", MAC,
                           "dev", PF, "master"], check=False)
            if p.returncode == 0:
                return f"removed in {self.namespaces[side]}"
            if "No such file" in p.stderr or "Cannot find device" in p.stderr:
                return f"nothing to remove in {self.namespaces[side]}"
            raise LabError(f"bridge fdb del {MAC} dev {PF}: {p.stderr.strip()}")
        return self._timed(f"bridge fdb del {MAC} dev {PF} master", step)

    def vf_mac_zero(self) -> float:
        """`ip link set $PF vf $VF_NUM mac 00:..:00`: there is no SR-IOV here.

        The real command stops the detached VF from receiving for the guest's
        MAC. unplug() already deleted the whole pair, so normally this is a
        no-op; if a VF far end remains, it is set down instead."""
        side = self._where(PF)

        def step() -> str:
            if side is None:
                return "no SR-IOV in the lab; VF already gone, nothing to do"
            self._ip(side, "link", "set", PF, "down")
            return f"no SR-IOV in the lab; set {PF} in {self.namespaces[side]} down instead"
        return self._timed(f"ip link set {PF} vf 5 mac {ZERO_MAC}", step)

    def move_virtio(self, side: str) -> float:
        """`virsh migrate --live`: move tap01 to `side`'s bridge, keeping its admin state.

        Moving a link between namespaces closes it and drops it from its bridge,
        so both are restored; the guest sees a brief carrier blip if it was up."""
        if side not in SIDES:
            raise LabError(f"move_virtio: side must be src or dst, not {side!r}")
        cur = self._where(TAP)
        if cur is None:
            raise LabError(f"{TAP} is in neither {self.src} nor {self.dst}")

        def step() -> str:
            if cur == side:
                return f"{TAP} already in {self.namespaces[side]}"
            was_up = "UP" in (self._link(cur, TAP) or {}).get("flags", [])
            self._ip(cur, "link", "set", TAP, "netns", self.namespaces[side])
            self._ip(side, "link", "set", TAP, "master", BRIDGE, *(["up"] if was_up else []))
            return f"moved {TAP} {self.namespaces[cur]} -> {self.namespaces[side]} ({'up' if was_up else 'down'})"
        return self._timed("virsh migrate --live $DOMAIN qemu+ssh://$REMOTE_HOST/system", step)

    def migrate(self, to: str | None = None) -> list[tuple[str, float]]:
        """Both of the document's scripts in order; returns (command, seconds).

        `to` defaults to the side the virtio backend is NOT on (dst for a fresh
        lab), so calling migrate() again moves the VM back."""
        to = to or ("src" if self._where(TAP) == "dst" else "dst")
        steps: list[tuple[str, Callable[[], float]]] = [
            ("source: virsh domif-setlink $DOMAIN $TAP_IF up", lambda: self.link("virtio", "up")),
            ("source: bridge fdb del $MAC dev $PF master", self.fdb_del),
            ("source: virsh detach-device $DOMAIN $VF_XML", self.unplug),
            ("source: ip link set $PF vf $VF_NUM mac $ZERO_MAC", self.vf_mac_zero),
            ("source: virsh migrate --live $DOMAIN qemu+ssh://$REMOTE_HOST/system",
             lambda: self.move_virtio(to)),
            ("destination: virsh attach-device $DOMAIN $VF_XML", lambda: self.plug(to)),
            ("destination: virsh domif-setlink $DOMAIN $TAP_IF down", lambda: self.link("virtio", "down")),
        ]
        return [(doc, fn()) for doc, fn in steps]
