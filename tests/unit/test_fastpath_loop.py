"""The loop's contract with the control plane, without root: socketpairs
stand in for the TAP and the slave sockets (the loop only reads, writes and
polls them).  Real devices: tests/lab/test_datapath_events.py."""
import os
import select
import socket
import threading
import time

import pytest

try:
    from netfo import _fastpath as fp
except ImportError as e:        # pragma: no cover - a build without the extension
    pytest.skip(f"netfo._fastpath is not built ({e})", allow_module_level=True)

NO_SUCH_LINK = 0x7FFFFFF0


def pair(blocking=False):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(blocking)
    b.setblocking(blocking)
    return a, b


def full_tap():
    """A 'TAP' (a blocking socketpair end) whose peer's queue is full: a
    loop writing to it blocks."""
    ta, tb = pair()
    try:
        while True:
            ta.send(b"x" * 64)
    except BlockingIOError:
        pass
    ta.setblocking(True)
    return ta, tb


class Loop:
    """fn() in a thread; .result is its return value or the exception."""

    def __init__(self, fn):
        self.result = "running"
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.result = fn()
        except BaseException as e:      # noqa: B902 - reported to the test
            self.result = e

    def join(self, timeout=3.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the loop did not return"
        return self.result


def eventually(cond, timeout=2.0):
    """cond() within timeout: counters are updated after the frames move."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return cond()


def closed(fd):
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


@pytest.fixture
def tap():
    a, b = pair()
    yield a, b
    a.close()
    b.close()


def test_run_returns_none_after_stop(tap):
    dp = fp.Datapath(tap[0].fileno())
    loop = Loop(dp.run)
    time.sleep(0.05)
    dp.stop()
    assert loop.join() is None


def test_threads_two_loops_return_none_after_stop(tap):
    dp = fp.Datapath(tap[0].fileno(), threads=2)
    loops = [Loop(dp.run_tx), Loop(dp.run_rx)]
    time.sleep(0.05)
    dp.stop()
    assert [l.join() for l in loops] == [None, None]


def test_set_slave_without_loops_closes_at_once(tap):
    dp = fp.Datapath(tap[0].fileno())
    s1, s2 = pair()[0].detach(), pair()[0].detach()
    dp.set_slave(fp.PRIMARY, s1)
    t0 = time.monotonic()
    dp.set_slave(fp.PRIMARY, s2)
    assert time.monotonic() - t0 < 0.5
    assert closed(s1) and dp.fd(fp.PRIMARY) == s2


def test_set_slave_waits_only_for_running_loops(tap):
    """threads=2 with only the TX loop running, then with none after stop():
    set_slave returns at once both times (it used to wait for ever)."""
    dp = fp.Datapath(tap[0].fileno(), threads=2)
    tx = Loop(dp.run_tx)
    time.sleep(0.05)
    old = pair()[0].detach()
    dp.set_slave(fp.PRIMARY, old)
    t0 = time.monotonic()
    dp.set_slave(fp.PRIMARY, pair()[0].detach())
    assert time.monotonic() - t0 < 0.5 and closed(old)
    dp.stop()
    assert tx.join() is None
    old = dp.fd(fp.PRIMARY)
    t0 = time.monotonic()
    dp.set_slave(fp.PRIMARY, -1)
    assert time.monotonic() - t0 < 0.5 and closed(old)


def test_set_slave_gives_up_on_a_stuck_loop():
    """A loop that never reaches a quiescent point (here: blocked writing to
    a full 'TAP') makes set_slave raise TimeoutError after `timeout`, the old
    socket left open until a later set_slave can close it safely."""
    ta, tb = full_tap()
    dp = fp.Datapath(ta.fileno(), fp.RX_ALL)
    sa, sb = pair()
    dp.set_slave(fp.PRIMARY, sa.detach())
    loop = Loop(dp.run)
    time.sleep(0.05)
    sb.send(bytes(fp.VNET_HDR_LEN) + b"y" * 60)    # delivered to the full TAP: blocks
    time.sleep(0.1)
    old = dp.fd(fp.PRIMARY)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        dp.set_slave(fp.PRIMARY, pair()[0].detach(), timeout=0.3)
    assert 0.25 < time.monotonic() - t0 < 1.0
    assert not closed(old)              # a loop may still use it
    while True:                         # unblock the loop
        try:
            tb.recv(100)
        except BlockingIOError:
            break
    dp.stop()
    assert loop.join() is None
    dp.set_slave(fp.PRIMARY, -1)
    assert closed(old)
    ta.close(), tb.close(), sb.close()


def test_event_fd_is_readable_when_the_loop_holds_a_slave(tap):
    """A frame to send via a slave whose link is not running (here: a link
    that does not exist) makes the loop hold the slave, count it in
    link_holds and add 1 to event_fd()."""
    dp = fp.Datapath(tap[0].fileno())
    ev = dp.event_fd()
    assert ev == dp.event_fd() and ev >= 0
    s, peer = pair()
    dp.set_slave(fp.PRIMARY, s.detach(), NO_SUCH_LINK)
    dp.set_ready(fp.PRIMARY, True)
    assert dp.active() == fp.PRIMARY
    loop = Loop(dp.run)
    try:
        assert select.select([ev], [], [], 0.1)[0] == []
        tap[1].send(bytes(fp.VNET_HDR_LEN) + b"z" * 60)
        assert select.select([ev], [], [], 2)[0] == [ev]
        assert int.from_bytes(os.read(ev, 8), "little") == 1
        assert select.select([ev], [], [], 0)[0] == []   # read resets it
        assert eventually(lambda: dp.stats()["master"]["drop_no_slave"] == 1)
        st = dp.stats()["master"]
        assert (st["link_holds"], st["send_failovers"], st["drop_no_slave"]) == (1, 0, 1)
        assert dp.active() == -1
        dp.set_ready(fp.PRIMARY, True)      # still held: release() first
        assert dp.active() == -1
        dp.release(fp.PRIMARY)
        dp.set_ready(fp.PRIMARY, True)
        assert dp.active() == fp.PRIMARY
    finally:
        dp.stop()
        assert loop.join() is None
        peer.close()


def test_frames_forwarded_when_the_link_runs(tap):
    """The same path with a running link (lo): the frame is sent, nothing held."""
    dp = fp.Datapath(tap[0].fileno())
    s, peer = pair()
    dp.set_slave(fp.PRIMARY, s.detach(), socket.if_nametoindex("lo"))
    dp.set_ready(fp.PRIMARY, True)
    loop = Loop(dp.run)
    try:
        frame = bytes(fp.VNET_HDR_LEN) + b"w" * 60
        tap[1].send(frame)
        assert select.select([peer], [], [], 2)[0] == [peer]
        assert peer.recv(200) == frame
        assert select.select([dp.event_fd()], [], [], 0)[0] == []
        assert eventually(lambda: dp.stats()["master"]["tx_packets"] == 1)
    finally:
        dp.stop()
        assert loop.join() is None
        peer.close()


def test_event_fd_closed_with_the_datapath(tap):
    dp = fp.Datapath(tap[0].fileno())
    ev = dp.event_fd()
    del dp
    assert closed(ev)


def test_ping_answers_only_while_every_loop_runs(tap):
    """ping(): False with no loop, True once the loop(s) the datapath needs
    run (both for threads=2), False again after stop()."""
    dp = fp.Datapath(tap[0].fileno())
    assert dp.ping(0.1) is False
    loop = Loop(dp.run)
    assert eventually(lambda: dp.ping(0.5))
    dp.stop()
    assert loop.join() is None
    assert dp.ping(0.1) is False
    dp2 = fp.Datapath(tap[0].fileno(), threads=2)
    tx = Loop(dp2.run_tx)
    time.sleep(0.05)
    assert dp2.ping(0.1) is False           # the RX loop is not running
    rx = Loop(dp2.run_rx)
    assert eventually(lambda: dp2.ping(0.5))
    dp2.stop()
    assert tx.join() is None and rx.join() is None


def test_ping_false_on_a_wedged_loop():
    """A loop blocked writing to a full 'TAP' runs but cannot answer: ping()
    is False after its timeout, and True again once the loop is unblocked."""
    ta, tb = full_tap()
    dp = fp.Datapath(ta.fileno(), fp.RX_ALL)
    sa, sb = pair()
    dp.set_slave(fp.PRIMARY, sa.detach())
    loop = Loop(dp.run)
    assert eventually(lambda: dp.ping(0.5))
    sb.send(bytes(fp.VNET_HDR_LEN) + b"y" * 60)    # delivered to the full TAP: blocks
    time.sleep(0.1)
    t0 = time.monotonic()
    assert dp.ping(0.3) is False
    assert 0.25 < time.monotonic() - t0 < 1.0
    while True:                         # unblock the loop
        try:
            tb.recv(100)
        except BlockingIOError:
            break
    assert eventually(lambda: dp.ping(0.5))
    dp.stop()
    assert loop.join() is None
    dp.set_slave(fp.PRIMARY, -1)
    ta.close(), tb.close(), sb.close()
