"""netfo as a systemd service, without systemd: the test's own NOTIFY_SOCKET
(a datagram socket, all that systemd gives a Type=notify service) and
WATCHDOG_USEC, with `netfo up --foreground` in a lab's guest namespace."""
import os
import socket
import time

import pytest

from support.harness import Netfo


class Manager:
    """The service manager's end: a path socket (an abstract one would
    belong to the test's network namespace, not the guest's)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.log = []                       # (monotonic, text, fds)

    def recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
        except socket.timeout:
            return None
        fds = []
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += list(memoryview(payload).cast("i"))
        self.log.append((time.monotonic(), data.decode(), fds))
        return self.log[-1]

    def until(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.recv(max(0.01, deadline - time.monotonic()))
            if m is not None and pred(m[1]):
                return m
        raise AssertionError(f"no such message; got {[t for _, t, _ in self.log][-10:]}")

    def close(self):
        for _, _, fds in self.log:
            for fd in fds:
                os.close(fd)
        self.sock.close()


@pytest.fixture
def manager(tmp_path):
    m = Manager(str(tmp_path / "notify"))
    yield m
    m.close()


def start_under_manager(lab, manager, watchdog_usec):
    saved = {k: os.environ.get(k) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    os.environ.update(NOTIFY_SOCKET=manager.path, WATCHDOG_USEC=str(watchdog_usec))
    os.environ.pop("WATCHDOG_PID", None)
    try:
        return Netfo(lab).start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_ready_status_fdstore_watchdog_and_a_dead_loop(lab, manager):
    n = start_under_manager(lab, manager, 400_000)         # pings every 0.2 s
    try:
        _, text, _ = manager.until(lambda t: t.startswith("READY=1"))
        assert text == "READY=1\nSTATUS=ens10: transmitting via primary ens11"
        _, text, fds = manager.until(lambda t: t.startswith("FDSTORE=1"))
        assert text == "FDSTORE=1\nFDNAME=tap-ens10" and len(fds) == 1
        assert os.readlink(f"/proc/self/fd/{fds[0]}") == "/dev/net/tun"

        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.0:
            manager.recv(0.5)
        pings = [t for t, text, _ in manager.log if text == "WATCHDOG=1" and t >= t0]
        assert 7 <= len(pings) <= 13, len(pings)           # 10 expected in 2 s

        lab.unplug()                                        # a switch: a new STATUS=
        manager.until(lambda t: t == "STATUS=ens10: no slave can transmit (frames dropped)")
        lab.link("virtio", "up")
        manager.until(lambda t: t == "STATUS=ens10: transmitting via standby ens10nsby")

        # The loop dies (the TAP deleted: EBADFD): no more pings, STOPPING=1,
        # and the daemon exits non-zero.
        lab.run(lab.guest, "ip", "link", "del", "ens10")
        _, _, fds = manager.until(lambda t: t.startswith("STOPPING=1"))
        stopped = time.monotonic()
        assert n.proc.wait(15) != 0
        while manager.recv(0.5) is not None:
            pass
        assert not [t for t, text, _ in manager.log if text == "WATCHDOG=1" and t > stopped + 0.05]
        assert any(text == "FDSTOREREMOVE=1\nFDNAME=tap-ens10" for _, text, _ in manager.log)
    finally:
        n.stop()
        n.cli("down", "ens10", check=False)                 # the journal, if anything is left


def test_status_check_ok_degraded_down(lab, netfo):
    def check():
        p = netfo.cli("status", "ens10", "--check", check=False)
        return p.returncode, p.stdout.strip()
    assert check() == (0, "OK: ens10 transmits via primary ens11")
    assert netfo.cli("status", "ens10", check=False).returncode == 0
    lab.link("virtio", "up")
    netfo.wait(lambda st: any(s["ready"] for s in st["slaves"] if s["role"] == "standby"),
               what="standby ready")
    lab.unplug()
    netfo.wait(lambda st: st["active"] == "standby", what="standby transmits")
    assert check() == (1, "DEGRADED: ens10 transmits via standby ens10nsby (no primary)")
    lab.link("virtio", "down")
    netfo.wait(lambda st: st["active"] is None, what="nothing transmits")
    assert check() == (2, "DOWN: ens10: no slave can transmit (frames are dropped)")
    p = netfo.cli("status", "ens10", check=False)
    assert p.returncode == 1 and "none (frames dropped)" in p.stdout
    assert netfo.cli("status", "ens10", "--json", check=False).returncode == 0
    netfo.stop()
    code, line = check()
    assert code == 2 and line.startswith("DOWN: ens10: netfo is not running")


def test_restart_under_a_manager_hands_the_service_to_the_new_pid(lab, manager):
    """systemctl reload (ExecReload=netfo restart %i): the new daemon says
    MAINPID= before READY=1; the old one says nothing of stopping."""
    n = start_under_manager(lab, manager, 0)
    try:
        manager.until(lambda t: t.startswith("READY=1"))
        old = n.status()["pid"]
        saved = os.environ.get("NOTIFY_SOCKET")
        os.environ["NOTIFY_SOCKET"] = manager.path
        try:
            p = n.cli("restart", "ens10", check=False)
        finally:
            os.environ.pop("NOTIFY_SOCKET") if saved is None else os.environ.update(NOTIFY_SOCKET=saved)
        assert p.returncode == 0, p.stderr
        new = n.status()["pid"]
        assert new != old
        manager.until(lambda t: t == f"MAINPID={new}")
        _, text, _ = manager.until(lambda t: t.startswith("READY=1"))
        assert text == "READY=1\nSTATUS=ens10: transmitting via primary ens11"
        assert n.proc.wait(10) == 0                    # the old daemon left, cleanly
        while manager.recv(0.3) is not None:
            pass
        assert not [t for _, t, _ in manager.log if t.startswith("STOPPING") or "FDSTOREREMOVE" in t]
    finally:
        n.cli("down", "ens10", check=False)
        n.stop()
