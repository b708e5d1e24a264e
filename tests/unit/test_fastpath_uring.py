"""--tap-io uring: the loop reads the TAP with one multishot io_uring read
into provided buffers and writes it in batches (netfo/includes/tapring.h).
Without root: a socketpair stands in for the TAP (io_uring reads and writes
it as it would the TAP's fd); the real TAP: tests/lab/test_traffic.py."""
import os
import socket
import struct
import threading
import time

import pytest

try:
    from netfo import _fastpath as fp
except ImportError as e:        # pragma: no cover - a build without the extension
    pytest.skip(f"netfo._fastpath is not built ({e})", allow_module_level=True)

from netfo.config import Config
from support.state import io_uring_rings

V = fp.VNET_HDR_LEN
NEED_URING = pytest.mark.skipif(fp.uring_problem() is not None,
                                reason=f"no io_uring here: {fp.uring_problem()}")


def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    # room for a few thousand small datagrams queued at once
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return a, b


def frame(i: int, size: int = 60) -> bytes:
    return bytes(V) + struct.pack("!I", i) + bytes(size - 4)


def drain(sock, want: int, timeout: float = 3.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        try:
            got.append(sock.recv(70000))
        except BlockingIOError:
            time.sleep(0.005)
    return got


def seqs(frames) -> list:
    return [struct.unpack("!I", f[V:V + 4])[0] for f in frames]


def rings() -> int:
    return io_uring_rings(os.getpid())


class Rig:
    """A Datapath over a socketpair 'TAP' (tap: our end) and one slave
    socketpair (wire: our end), slave ready, loop(s) running."""

    def __init__(self, tap_io: int, threads: int = 1):
        self.tap, tap_dp = pair()
        self.wire, slave_dp = pair()
        self.dp = fp.Datapath(tap_dp.fileno(), fp.RX_ALL, threads, tap_io)
        self._tap_dp = tap_dp
        self.dp.set_slave(fp.PRIMARY, slave_dp.detach())
        self.dp.set_ready(fp.PRIMARY, True)
        self.results = []
        fns = [self.dp.run] if threads == 1 else [self.dp.run_tx, self.dp.run_rx]
        self.threads = [threading.Thread(target=self._run, args=(f,), daemon=True) for f in fns]
        for t in self.threads:
            t.start()

    def _run(self, fn):
        try:
            self.results.append(fn())
        except BaseException as e:      # noqa: B902 - reported to the test
            self.results.append(e)

    def stop(self):
        self.dp.stop()
        for t in self.threads:
            t.join(3)
            assert not t.is_alive(), "the loop did not return"
        return self.results

    def close(self):
        for s in (self.tap, self.wire, self._tap_dp):
            s.close()


@pytest.fixture(params=[fp.TAP_IO_SYSCALLS, fp.TAP_IO_URING, fp.TAP_IO_URING_WRITE],
                ids=["syscalls", "uring", "uring-write"])
def tap_io(request):
    if request.param != fp.TAP_IO_SYSCALLS and fp.uring_problem():
        pytest.skip(fp.uring_problem())
    return request.param


@pytest.mark.parametrize("threads", [1, 2])
def test_frames_cross_both_ways_in_order_and_counted(tap_io, threads):
    """More frames than the ring has buffers (64) at once: the multishot
    read runs out of buffers, ends (ENOBUFS) and is armed again; nothing
    lost, nothing reordered, each counted once."""
    r = Rig(tap_io, threads)
    try:
        n = 1000
        for i in range(n):
            r.tap.send(frame(i))
        assert seqs(drain(r.wire, n)) == list(range(n))
        for i in range(n):
            r.wire.send(frame(i, 200))
        got = drain(r.tap, n)
        assert seqs(got) == list(range(n))
        assert all(len(f) == V + 200 for f in got)
        m = r.dp.stats()["master"]
        assert (m["tx_packets"], m["tx_bytes"], m["tx_received"]) == (n, n * 60, n)
        assert (m["rx_packets"], m["rx_bytes"], m["rx_received"]) == (n, n * 200, n)
        assert r.stop() == [None] * threads
    finally:
        r.close()


def test_large_frames_keep_their_bytes(tap_io):
    """64 KB frames (a GSO frame's size) are read whole into a buffer."""
    r = Rig(tap_io)
    try:
        payloads = [os.urandom(65000) for _ in range(20)]
        for p in payloads:
            r.tap.send(bytes(V) + p)
        assert [f[V:] for f in drain(r.wire, 20)] == payloads
        for p in payloads:
            r.wire.send(bytes(V) + p)
        assert [f[V:] for f in drain(r.tap, 20)] == payloads
        r.stop()
    finally:
        r.close()


def test_frame_without_payload_is_dropped_and_counted(tap_io):
    r = Rig(tap_io)
    try:
        r.tap.send(bytes(V))                # a header and nothing else
        r.tap.send(frame(7))
        assert seqs(drain(r.wire, 1)) == [7]
        m = r.dp.stats()["master"]
        assert (m["drop_tap_read"], m["tx_dropped"], m["tx_packets"]) == (1, 1, 1)
        r.stop()
    finally:
        r.close()


@NEED_URING
def test_uring_mode_holds_two_rings_uring_write_one_syscalls_none():
    before = rings()
    tap, tap_dp = pair()
    dp = fp.Datapath(tap_dp.fileno(), fp.RX_ALL, 1, fp.TAP_IO_URING)
    assert dp.tap_io() == "uring" and rings() == before + 2
    del dp
    assert rings() == before
    dp = fp.Datapath(tap_dp.fileno(), fp.RX_ALL, 1, fp.TAP_IO_SYSCALLS)
    assert dp.tap_io() == "syscalls" and rings() == before
    dp = fp.Datapath(tap_dp.fileno(), fp.RX_ALL, 1, fp.TAP_IO_URING_WRITE)
    assert dp.tap_io() == "uring-write" and rings() == before + 1
    del dp
    # auto: what measured faster (README), where the kernel allows it
    dp = fp.Datapath(tap_dp.fileno(), fp.RX_ALL, 1, fp.TAP_IO_AUTO)
    assert dp.tap_io() == "uring-write" and dp.uring_error() == 0
    del dp
    tap.close()
    tap_dp.close()


def test_unknown_tap_io_is_refused():
    tap, tap_dp = pair()
    with pytest.raises(ValueError):
        fp.Datapath(tap_dp.fileno(), fp.RX_ALL, 1, 7)
    tap.close()
    tap_dp.close()


def test_config_tap_io_choices():
    assert Config().tap_io == "auto"          # uring-write where the kernel allows it
    assert Config(tap_io="uring").tap_io == "uring"
    with pytest.raises(ValueError, match="--tap-io must be one of syscalls, uring, uring-write, auto"):
        Config(tap_io="epoll")


# Run in a child whose io_uring_setup fails with EPERM (a seccomp filter, as
# with kernel.io_uring_disabled or a container's profile): auto falls back
# to read()/write() and forwards; uring refuses in one line.
NO_URING = r"""
import ctypes, socket, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
IO_URING_SETUP = 425                    # x86_64 and every arch since 5.1
prog = [(0x20, 0, 0, 0),                # ld [nr]
        (0x15, 0, 1, IO_URING_SETUP),   # jeq io_uring_setup
        (0x06, 0, 0, 0x00050000 | 1),   # ret ERRNO(EPERM)
        (0x06, 0, 0, 0x7fff0000)]       # ret ALLOW
buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in prog))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fp_ = Fprog(len(prog), ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0                  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fp_), 0, 0) == 0  # seccomp filter
from netfo import _fastpath as fp
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
print(fp.uring_problem())
dp = fp.Datapath(a.fileno(), fp.RX_ALL, 1, fp.TAP_IO_AUTO)
print(dp.tap_io(), dp.uring_error())
try:
    fp.Datapath(a.fileno(), fp.RX_ALL, 1, fp.TAP_IO_URING)
except OSError as e:
    print(e.strerror)
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the filter names x86_64's syscall")
def test_without_io_uring_auto_falls_back_and_uring_refuses():
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-c", NO_URING], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    problem, auto, refused = p.stdout.splitlines()
    assert problem == "this kernel has no io_uring (or kernel.io_uring_disabled is set)"
    assert auto == "syscalls 38"            # ENOSYS
    assert refused == "--tap-io uring: " + problem
