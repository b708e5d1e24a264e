"""The rig of the micro-benchmarks: one forwarding loop over real devices.

An anonymous network namespace (unshare, so the kernel removes it with the
last fd, even if the process dies) holds a TAP `mtap` - the loop's master -
and a veth pair `mv0`/`mv1`; the loop's slave socket is on mv0.  The
forwarder runs in a forked child that is kept stopped (SIGSTOP) while a
round's N frames are queued up front:

* tap->slave (guest->network): frames queue in the TAP's ring (txqueuelen
  > N) until the loop reads them; counted in bytes arriving on mv1.
* slave->tap (network->guest): frames arriving on mv0 queue in the loop's
  slave socket (a big receive buffer); counted in bytes the TAP receives
  (a TAP counts what is written into it).

Frames are injected with AF_PACKET sockets on side paths that keep 64 KB GSO
frames whole (MicroLab._injector says how and why).
SIGCONT starts the clock; the round ends when N frames' bytes were counted (from
/proc/thread-self/net/dev, ~20 us a read) or counting stalls.  Queueing first
keeps the injector (Python, one send per frame) off the CPU while the loop
runs: what is timed is the loop draining full queues, with the kernel work
of its own reads and writes.  Every device drops what it receives at its
nftables ingress hook, so no IP stack work is timed.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import struct
import subprocess
import time

from netfo.kernel import packet, tap
from netfo.frames import ones_sum

CLONE_NEWNET = 0x40000000
MAC, PEER_MAC = "52:54:00:00:12:53", "52:54:00:00:12:01"
TAP_MAC = "52:54:00:00:12:99"      # not MAC: the bridge must not take MAC for its own
TAP_IF, SLAVE_IF, FAR_IF = "mtap", "mv0", "mv1"
DIRECTIONS = ("tap->slave", "slave->tap")
RESULTS: list[dict] = []        # filled by test_micro.py, printed by conftest.py
_libc = ctypes.CDLL(None, use_errno=True)


def _sh(*argv: str, stdin: str | None = None) -> None:
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip()}")


# ------------------------------------------------------------------ frames

def _ipv4(total: int, proto: int) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, proto, 0,
                      bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return hdr[:10] + struct.pack("!H", ~ones_sum(hdr) & 0xFFFF) + hdr[12:]


def _eth(direction: str) -> bytes:
    """tap->slave frames come from the guest (MAC), slave->tap ones from the peer."""
    src, dst = (MAC, PEER_MAC) if direction == "tap->slave" else (PEER_MAC, MAC)
    return bytes.fromhex(dst.replace(":", "") + src.replace(":", "")) + b"\x08\x00"


def frame(size: str, direction: str) -> bytes:
    """virtio-net header + Ethernet frame: "64" and "1500" are plain UDP frames
    of 60 and 1514 bytes (64 / 1518 with FCS); "64k" is a 64 KB TCP GSO frame
    (65,214 bytes: 45 segments, a Linux guest's largest) as a TSO guest
    hands it over: NEEDS_CSUM,
    TCPV4, gso_size 1448, partial checksum (pseudo-header sum) in the TCP
    header."""
    if size in ("64", "1500"):
        flen = 60 if size == "64" else 1514
        ip = _ipv4(flen - 14, 17)
        udp = struct.pack("!HHHH", 9, 9, flen - 34, 0)
        return bytes(tap.VNET_HDR_LEN) + _eth(direction) + ip + udp + bytes(flen - 42)
    flen = 54 + 45 * 1448 + 8   # GRO rebuilds 45 segments, the 8-byte tail is dropped
    ip = _ipv4(flen - 14, 6)
    tcp_len = flen - 34
    pseudo = ones_sum(bytes([10, 0, 0, 1, 10, 0, 0, 2, 0, 6]) + struct.pack("!H", tcp_len))
    tcp_hdr = struct.pack("!HHIIBBHHH", 9, 9, 1, 1, 5 << 4, 0x10, 65535, pseudo, 0)   # ACK
    # flags NEEDS_CSUM, gso_type TCPV4, hdr_len, gso_size, csum_start, csum_offset
    vnet = struct.pack("<BBHHHH", 1, 1, 54, 1448, 34, 16)
    return vnet + _eth(direction) + ip + tcp_hdr + bytes(tcp_len - 20)


# ---------------------------------------------------------------- namespace

class MicroLab:
    """`with MicroLab() as ml:` - the calling thread is in the namespace meanwhile."""

    def __enter__(self) -> "MicroLab":
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        if _libc.unshare(CLONE_NEWNET) != 0:
            os.close(self._home)
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
        self.fds: list[int] = []
        self.seq = 1
        try:
            self._build()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _build(self) -> None:
        _sh("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        _sh("ip", "link", "set", "lo", "up")
        self.tap_fd = tap.open_tap(TAP_IF)         # netfo's own TAP setup
        self.fds.append(self.tap_fd)
        tap.set_carrier(self.tap_fd, True)
        _sh("ip", "link", "add", SLAVE_IF, "address", MAC, "type", "veth", "peer", "name", FAR_IF,
            "address", PEER_MAC)
        # Injectors (see _injector): veth ia0 -> ia1 (GRO) -> bridge -> target.
        for inj, target in (("a", TAP_IF), ("b", FAR_IF)):
            br, i0, i1 = f"mbr{inj}", f"i{inj}0", f"i{inj}1"
            _sh("ip", "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
            _sh("ip", "link", "add", i0, "type", "veth", "peer", "name", i1)
            _sh("ethtool", "-K", i0, "tso", "off")     # else veth skips the far end's GRO
            _sh("ethtool", "-K", i1, "gro", "on")
            for dev in (i1, target):
                _sh("ip", "link", "set", dev, "master", br)
        _sh("ip", "link", "set", TAP_IF, "address", TAP_MAC, "txqueuelen", "150000")
        _sh("tc", "qdisc", "replace", "dev", TAP_IF, "root", "noqueue")
        devs = (TAP_IF, SLAVE_IF, FAR_IF, "mbra", "ia0", "ia1", "mbrb", "ib0", "ib1")
        for dev in devs:    # no IGMP reports in the counts
            _sh("ip", "link", "set", dev, "multicast", "off", "up")
        # Each end of the loop drops what it gets (no IP stack work is timed);
        # the GRO ends drop the small tail segment (see _injector).
        rules = [f'chain in_{d} {{ type filter hook ingress device "{d}" priority 0; policy drop; }}'
                 for d in (TAP_IF, SLAVE_IF, FAR_IF)]
        rules += [f'chain in_{d} {{ type filter hook ingress device "{d}" priority 0; '
                  f'ip protocol tcp meta length < 200 drop; }}' for d in ("ia1", "ib1")]
        _sh("nft", "-f", "-", stdin="table netdev micro {\n" + "\n".join(rules) + "\n}\n")
        self.slave_fd = packet.open_slave(SLAVE_IF)   # netfo's own slave socket setup
        self.fds.append(self.slave_fd)
        _bigbuf(self.slave_fd)
        self.inject = {d: self._injector(dev) for d, dev in zip(DIRECTIONS, ("ia0", "ib0"))}

    def _injector(self, dev: str) -> socket.socket:
        """A send-only AF_PACKET socket (protocol 0: it receives nothing).

        A GSO frame sent with PACKET_VNET_HDR is marked SKB_GSO_DODGY, and a
        device without NETIF_F_GSO_ROBUST (veth, tun) segments it in software
        when sending it (the loop's own sends on mv0 are segmented so too).
        A guest stack's or a peer's TSO frame is not marked so, and reaches
        the loop whole.  To get such frames, the injector sends on a veth
        whose far end does GRO, which rebuilds every segment but the last in
        one trusted GSO frame; that end drops the last (small) one, and a
        bridge forwards the frame whole to the TAP (ia0 -> ia1 -> mbra ->
        mtap) or to mv1, which hands it to the loop's slave mv0 (ib0 -> ib1
        -> mbrb -> mv1 -> mv0).  Plain frames take the same way unchanged."""
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.setsockopt(packet.SOL_PACKET, packet.PACKET_VNET_HDR, 1)
        s.bind((dev, 0))
        return s

    def __exit__(self, *exc: object) -> None:
        for s in getattr(self, "inject", {}).values():
            s.close()
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        # Back home; the namespace goes with its last fd (all closed now).
        if _libc.setns(self._home, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back to the original namespace")
        os.close(self._home)

    def count(self, direction: str) -> int:
        """Bytes arrived on the far side of the loop for this direction.

        Bytes, not packets: a 64 KB frame the loop sends on mv0 is segmented
        there (see _injector), so mv1 counts ~46 packets for it."""
        dev, col = (FAR_IF, 0) if direction == "tap->slave" else (TAP_IF, 0)
        with open("/proc/thread-self/net/dev") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name.strip() == dev:
                    return int(rest.split()[col])
        raise RuntimeError(f"{dev} not in /proc/net/dev")

    def fill(self, direction: str, data: bytes, n: int) -> None:
        """Queue n copies of data.  Each GSO frame gets its own TCP sequence
        range with a gap before the next, so that GRO rebuilds each one
        whole and only it (GRO would not take a PSH segment in; it would
        merge contiguous frames)."""
        send = self.inject[direction].send
        if data[1] == 0:            # gso_type NONE
            for _ in range(n):
                send(data)
            return
        buf, payload = bytearray(data), len(data) - tap.VNET_HDR_LEN - 54
        for _ in range(n):
            self.seq = (self.seq + payload + 1) & 0xFFFFFFFF
            struct.pack_into("!I", buf, tap.VNET_HDR_LEN + 38, self.seq)   # TCP sequence number
            send(buf)


def _bigbuf(fd: int) -> None:
    """Room for a whole round of 64 KB frames in the socket queue (root may force it)."""
    s = socket.socket(fileno=fd)
    try:
        s.setsockopt(socket.SOL_SOCKET, packet.SO_RCVBUFFORCE, 1 << 30)
    finally:
        s.detach()


# ---------------------------------------------------------------- forwarder

def _serve(impl: str, tap_fd: int, slave_fd: int) -> None:
    """Child: run one forwarding loop until killed."""
    if impl.startswith("netfo"):
        from netfo import _fastpath
        dp = _fastpath.Datapath(tap_fd, _fastpath.RX_ACTIVE, 1,
                                {"netfo-uring": _fastpath.TAP_IO_URING}.get(
                                    impl, _fastpath.TAP_IO_SYSCALLS))
        dp.set_slave(_fastpath.PRIMARY, os.dup(slave_fd), socket.if_nametoindex(SLAVE_IF))
        dp.set_ready(_fastpath.PRIMARY, True)
        dp.run()
    else:
        from .reference_forwarder import Forwarder
        Forwarder(tap_fd, os.dup(slave_fd)).run()


class Forwarder:
    """A forked, stopped forwarding loop: go() lets it run, pause() stops it."""

    def __init__(self, ml: MicroLab, impl: str) -> None:
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.kill(os.getpid(), signal.SIGSTOP)
                _serve(impl, ml.tap_fd, ml.slave_fd)
            finally:
                os._exit(0)
        self._wait_stopped()

    def _wait_stopped(self) -> None:
        _, status = os.waitpid(self.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            raise RuntimeError(f"forwarder {self.pid} died (status {status:#x})")

    def go(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self._wait_stopped()

    def close(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def run_round(ml: MicroLab, fwd: Forwarder, direction: str, nbytes: int,
              stall: float = 0.25) -> tuple:
    """Let the stopped loop drain what was queued until nbytes arrived on the
    far side (or nothing more came for `stall` s): (seconds, bytes)."""
    base = ml.count(direction)
    t0 = time.perf_counter()
    fwd.go()
    last, t_last = base, t0
    while True:
        c = ml.count(direction)
        now = time.perf_counter()
        if c != last:
            last, t_last = c, now
            if c - base >= nbytes:
                break
        elif now - t_last > stall:      # frames were lost: time up to the last one seen
            break
        time.sleep(0.0002)
    fwd.pause()
    return t_last - t0, last - base


def bytes_per_frame(ml: MicroLab, fwd: Forwarder, direction: str, data: bytes) -> int:
    """What one frame adds to the far side's byte counter (segmentation included)."""
    k = 100     # floor division: a stray frame of under k bytes changes nothing
    ml.fill(direction, data, k)
    return run_round(ml, fwd, direction, 1 << 40, stall=0.05)[1] // k
