"""sd_notify without systemd: the test's own NOTIFY_SOCKET is all systemd
offers a service (a datagram socket), and the service-side logic
(netfo.service) with a stand-in daemon."""
import os
import socket
import threading
import time
import types

import pytest

from netfo import sdnotify, service


@pytest.fixture(params=["path", "abstract"])
def manager(request, tmp_path):
    """A datagram socket as systemd's; yields (env, recv())."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify")
        s.bind(name)
    else:
        name = f"@netfo-test-{os.getpid()}-{id(s)}"
        s.bind("\0" + name[1:])
    s.settimeout(2)

    def recv(timeout=2.0):
        s.settimeout(timeout)
        data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
        fds = []
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += list(memoryview(payload).cast("i"))
        return data.decode(), fds
    yield {"NOTIFY_SOCKET": name}, recv
    s.close()


def test_noop_without_notify_socket():
    assert sdnotify.notify("READY=1", env={}) is False
    assert sdnotify.ready("x", env={}) is False
    assert sdnotify.address({"NOTIFY_SOCKET": "vsock:2:1"}) is None


def test_messages(manager):
    env, recv = manager
    assert sdnotify.ready("ens10: transmitting via primary ens11", env=env)
    assert recv() == ("READY=1\nSTATUS=ens10: transmitting via primary ens11", [])
    sdnotify.status("s", env=env)
    assert recv()[0] == "STATUS=s"
    sdnotify.watchdog(env=env)
    assert recv()[0] == "WATCHDOG=1"
    sdnotify.mainpid(1234, env=env)
    assert recv()[0] == "MAINPID=1234"
    sdnotify.stopping(env=env)
    assert recv()[0] == "STOPPING=1"
    sdnotify.fdstore_remove("tap-ens10", env=env)
    assert recv()[0] == "FDSTOREREMOVE=1\nFDNAME=tap-ens10"


def test_fdstore_passes_the_fd(manager, tmp_path):
    env, recv = manager
    f = tmp_path / "x"
    f.write_text("hello")
    fd = os.open(f, os.O_RDONLY)
    try:
        assert sdnotify.fdstore([fd], "tap-ens10", env=env)
        text, fds = recv()
        assert text == "FDSTORE=1\nFDNAME=tap-ens10" and len(fds) == 1
        assert os.fstat(fds[0]).st_ino == os.fstat(fd).st_ino     # the same file
        assert os.read(fds[0], 5) == b"hello"
        os.close(fds[0])
    finally:
        os.close(fd)
    with pytest.raises(ValueError):
        sdnotify.fdstore([0], "a:b", env=env)
    with pytest.raises(ValueError):
        sdnotify.status("two\nlines", env=env)


def test_unreachable_socket_is_no_error(tmp_path):
    assert sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "none")}) is False


def test_watchdog_interval():
    me = str(os.getpid())
    assert sdnotify.watchdog_interval({}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": me}) == 0.2
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "x"}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_status_line():
    assert service.status_line("ens10", "primary", "ens11") == "ens10: transmitting via primary ens11"
    assert service.status_line("ens10", None, None) == "ens10: no slave can transmit (frames dropped)"
    assert service.fdname("ens10") == "tap-ens10"


class FakeDp:
    def __init__(self):
        self.answer = True

    def ping(self, timeout):
        return self.answer


def fake_daemon():
    loop = threading.Thread(target=time.sleep, args=(30,), daemon=True)
    loop.start()
    return types.SimpleNamespace(stop=threading.Event(), beat=time.monotonic(),
                                 loop_error=None, loops=[loop], dp=FakeDp(), ifname="ens10",
                                 takeover=False, handed_over=False)


def test_alive_needs_the_control_loop_and_every_forwarding_loop():
    d = fake_daemon()
    svc = service.Service.__new__(service.Service)
    svc.d, svc.interval = d, 0.2
    assert svc.alive(0.1) is None
    d.dp.answer = False                         # wedged
    assert "did not answer" in svc.alive(0.1)
    d.dp.answer = True
    d.beat -= 5                                 # control loop stuck
    assert "control loop" in svc.alive(0.1)
    d.beat = time.monotonic()
    d.loops.append(threading.Thread(target=lambda: None))   # never started: not alive
    assert "not running" in svc.alive(0.1)
    d.loops.pop()
    d.loop_error = OSError(77, "EBADFD")
    assert "not running" in svc.alive(0.1)
    d.loop_error = None
    d.stop.set()
    assert svc.alive(0.1) == "stopping"


def test_watchdog_thread_pings_at_half_watchdog_usec_while_alive(manager, monkeypatch):
    env, recv = manager
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")     # a ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    d = fake_daemon()
    d.builder = types.SimpleNamespace(tap_fd=-1)
    d.group = d.slaves = None
    svc = service.Service(d)
    assert svc.interval == 0.1
    keep = threading.Event()

    def beat():                                 # the control loop turning
        while not keep.is_set():
            d.beat = time.monotonic()
            time.sleep(0.02)
    threading.Thread(target=beat, daemon=True).start()
    try:
        svc.ready()
        assert recv()[0].startswith("READY=1\nSTATUS=ens10: no slave")
        t0 = time.monotonic()
        got = []
        while time.monotonic() - t0 < 1.0:
            got.append(recv()[0])
        assert set(got) == {"WATCHDOG=1"} and 8 <= len(got) <= 12, got
        d.dp.answer = False                     # a loop wedges: the pings stop
        time.sleep(0.15)
        with pytest.raises(socket.timeout):
            while True:
                recv(0.5)                       # drain; then nothing for 0.5 s
        d.dp.answer = True
        assert recv()[0] == "WATCHDOG=1"
        svc.stopping()
        assert recv()[0].startswith("STOPPING=1")
    finally:
        keep.set()
        svc.quit.set()
