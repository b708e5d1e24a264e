"""The control socket against local users, malformed input and slow clients.

An abstract Unix socket has no permissions: every process in the network
namespace can connect to the daemon, or bind a name before it.  Unprivileged
clients run as nobody (setpriv) in the guest namespace, with Debian's
/usr/bin/python3 and a stdlib-only client (the tests' interpreter may not be
readable for nobody); the real `netfo` CLI runs as nobody from a
world-readable copy of the package's pure-Python files.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from netfo.lab import PEER_IP4, PF

from support.traffic import Stream

PY = "/usr/bin/python3"
NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all")
pytestmark = pytest.mark.skipif(not os.access(PY, os.X_OK), reason=f"needs {PY}")

CLIENT = r'''
import json, socket, sys, time
mode, name = sys.argv[1], "\0netfo/" + sys.argv[2]

def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(float(sys.argv[3]) if len(sys.argv) > 3 else 10)
    s.connect(name)
    return s

def answer(s):
    data, t0 = b"", time.monotonic()
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        data = data or ("%s" % e).encode()
    return data.decode(errors="replace"), time.monotonic() - t0

if mode == "send":                      # stdin as it is, then read till EOF
    s = connect()
    payload, sent = sys.stdin.buffer.read(), 0
    try:
        while sent < len(payload):
            sent += s.send(payload[sent:])
    except OSError as e:
        pass                            # the server closed on us: say how far we got
    reply, waited = answer(s)
    print(json.dumps({"reply": reply, "sent": sent, "waited": waited}))
elif mode == "trickle":                 # one byte a second, for ever, reconnecting
    print("started", flush=True)
    while True:
        try:
            s = connect()
            while True:
                s.send(b"{")
                time.sleep(1)
        except OSError:
            time.sleep(0.1)
elif mode == "serve":                   # a server that is not netfo's: answers anything
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(name)
    s.listen(8)
    print("listening", flush=True)
    while True:
        c, _ = s.accept()
        try:
            c.makefile().readline()
            c.sendall(b'{"ok": true, "active": "standby", "events": []}\n')
        except OSError:
            pass
        c.close()
'''


@pytest.fixture(scope="module")
def tools():
    """A world-readable dir: the raw client, and a copy of netfo's Python
    files with pyroute2 (for `/usr/bin/python3 -m netfo` as nobody)."""
    import pyroute2
    d = tempfile.mkdtemp(prefix="netfo-ctl-")
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pyfiles = shutil.ignore_patterns("*.so", "*.c", "*.pyx", "*.pxd", "__pycache__")
    shutil.copytree(os.path.join(here, "netfo"), os.path.join(d, "netfo"), ignore=pyfiles)
    shutil.copytree(os.path.dirname(pyroute2.__file__), os.path.join(d, "pyroute2"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(os.path.join(d, "client.py"), "w") as f:
        f.write(CLIENT)
    for root, dirs, files in os.walk(d):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def guest(lab, *argv, user=NOBODY, input=b"", timeout=30, env=()):
    return subprocess.run(["ip", "netns", "exec", lab.guest, *user, "env", *env, *argv],
                          input=input, capture_output=True, timeout=timeout, cwd="/")


def raw(lab, tools, payload: bytes, user=NOBODY, timeout=10) -> dict:
    """Send payload as it is (as nobody by default); the reply and how long
    the daemon took to close."""
    p = guest(lab, PY, f"{tools}/client.py", "send", "ens10", str(timeout),
              user=user, input=payload, timeout=timeout + 20)
    assert p.returncode == 0, p.stderr.decode()
    out = json.loads(p.stdout)
    try:
        out["json"] = json.loads(out["reply"].splitlines()[0])
    except (ValueError, IndexError):
        out["json"] = None
    return out


def cli_as(lab, tools, *argv, user=NOBODY):
    p = guest(lab, PY, "-m", "netfo", *argv, user=user, env=(f"PYTHONPATH={tools}",))
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def alive(netfo) -> dict:
    """The daemon still runs and answers (what a crash or a wedge would break)."""
    assert netfo.proc.poll() is None, f"the daemon exited: {netfo.tail()}"
    return netfo.status()


# -- who may change what -----------------------------------------------------

def test_nobody_may_read_but_not_change(lab, netfo, tools):
    for req in ({"cmd": "set", "active": "standby"}, {"cmd": "down"}, {"cmd": "handover"}):
        r = raw(lab, tools, json.dumps(req).encode() + b"\n")["json"]
        assert r and "needs root (CAP_NET_ADMIN)" in r.get("error", ""), (req, r)
    assert raw(lab, tools, b'{"cmd": "status"}\n')["json"]["version"] == 1
    assert "events" in raw(lab, tools, b'{"cmd": "events"}\n')["json"]
    # the real CLI as nobody: one line, exit 1
    for argv in (("set", "ens10", "active", "standby"), ("down", "ens10")):
        code, out, err = cli_as(lab, tools, *argv)
        assert code == 1 and err.count("\n") == 1, (argv, code, out, err)
        assert err.startswith("netfo: ") and "needs root (CAP_NET_ADMIN)" in err, err
    code, out, err = cli_as(lab, tools, "status", "ens10", "--json")
    assert code == 0 and json.loads(out)["master"]["name"] == "ens10", err
    st = alive(netfo)
    assert st["active"] == "primary" and st["forced"] is None


def test_cap_net_admin_counts_only_in_the_daemons_user_namespace(lab, netfo, tools):
    admin = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "--inh-caps=+net_admin", "--ambient-caps=+net_admin")
    r = raw(lab, tools, b'{"cmd": "set", "active": "standby"}\n', user=admin)["json"]
    assert r.get("ok"), r
    assert alive(netfo)["forced"] == "standby"
    # nobody with every capability, over a user namespace of its own
    userns = (*NOBODY, "unshare", "--user", "--map-root-user")
    probe = guest(lab, "true", user=userns)
    if probe.returncode != 0:
        pytest.skip(f"no unprivileged user namespaces here: {probe.stderr.decode().strip()}")
    r = raw(lab, tools, b'{"cmd": "set", "active": "auto"}\n', user=userns)["json"]
    assert "needs root" in r.get("error", "") and "user namespace" in r["error"], r
    assert alive(netfo)["forced"] == "standby"


# -- malformed input ---------------------------------------------------------

@pytest.mark.parametrize("payload, says", [
    (b"[]\n", "JSON object"),
    (b'{"cmd":"set","active":[]}\n', "active must be a string"),
    (b'{"cmd":"set","active":{"x":1}}\n', "active must be a string"),
    (b"[" * 20000 + b"]" * 20000 + b"\n", "nested too deeply"),
    (b'{"cmd":"status","pad":"' + b"x" * 200000 + b'"}\n', "longer than"),
], ids=["list", "set-list", "set-object", "deep", "oversized"])
def test_malformed_requests_are_refused_and_the_daemon_serves_on(lab, netfo, tools, payload, says):
    for user in (NOBODY, ()):               # the same for root: nothing crashes
        r = raw(lab, tools, payload, user=user)
        assert r["json"] and says in r["json"].get("error", ""), r["reply"][:300]
        st = alive(netfo)
        assert st["active"] == "primary"


def test_a_request_without_newline_gets_an_error_at_its_deadline(lab, netfo, tools):
    r = raw(lab, tools, b'{"cmd": "status"}')
    assert r["json"] and "within 2 s" in r["json"]["error"], r
    assert 1.5 < r["waited"] < 4, r
    alive(netfo)


def test_megabytes_without_newline_are_cut_at_the_limit(lab, netfo, tools):
    rss = lambda: int(next(l for l in open(f"/proc/{daemon_pid(netfo)}/status")
                           if l.startswith("VmRSS")).split()[1])
    before = rss()
    r = raw(lab, tools, b"x" * (8 << 20))
    assert r["json"] and "longer than" in r["json"]["error"], r["reply"][:200]
    assert r["sent"] < 4 << 20, r["sent"]
    assert rss() - before < 4096, (before, rss())        # kB
    alive(netfo)


def daemon_pid(netfo) -> int:
    return netfo.status()["pid"]


# -- slow clients never delay failover ----------------------------------------

def vf_transmits_after_replug(lab, timeout: float) -> float:
    """Re-plug the VF; seconds until frames from the guest reach its far end."""
    t0 = time.monotonic()
    lab.plug()
    while time.monotonic() - t0 < timeout:
        p = lab._ip("src", "-j", "-s", "link", "show", PF, check=False)
        if p.returncode == 0:
            rx = json.loads(p.stdout)[0]["stats64"]["rx"]["packets"]
            if rx >= 20:
                return time.monotonic() - t0
        time.sleep(0.01)
    return float("inf")


def test_a_trickling_client_does_not_delay_the_replugged_vf(lab, netfo, tools):
    lab.link("virtio", "up")
    netfo.wait(lambda s: all(sl["carrier"] for sl in s["slaves"]), what="both carriers")
    stream = Stream(lab, "guest", "peer", PEER_IP4, 5011, 1000, 14.0)
    time.sleep(0.5)
    lab.unplug()
    time.sleep(1.0)
    quiet = vf_transmits_after_replug(lab, 10)
    netfo.wait(lambda s: s["active"] == "primary", what="primary again")
    trickler = lab.popen("guest", *NOBODY, PY, f"{tools}/client.py", "trickle", "ens10",
                         stdout=subprocess.PIPE)
    try:
        assert trickler.stdout.readline() == b"started\n"
        time.sleep(1.5)                          # mid-request, a byte a second
        lab.unplug()
        time.sleep(1.0)
        trickle = vf_transmits_after_replug(lab, 10)
        print(f"VF transmits after re-plug: quiet {quiet:.3f} s, trickling client {trickle:.3f} s")
        assert trickle < quiet + 1.0 and trickle < 3.0, (quiet, trickle)
        assert netfo.status()["active"] == "primary"    # answered meanwhile, too
    finally:
        trickler.kill()
        trickler.wait()
    assert stream.result()["received"] > 0
    alive(netfo)


# -- the client's side: a server that is not netfo's --------------------------

def test_a_server_bound_by_a_non_root_process_is_not_trusted(lab, tools):
    fake = lab.popen("guest", *NOBODY, PY, f"{tools}/client.py", "serve", "fake0",
                     stdout=subprocess.PIPE)
    try:
        assert fake.stdout.readline() == b"listening\n"
        for argv in (("set", "fake0", "active", "standby"), ("down", "fake0"),
                     ("status", "fake0")):
            code, out, err = cli_as(lab, tools, *argv, user=())        # root asks
            assert code == 1 and out == "" and err.count("\n") == 1, (argv, code, out, err)
            assert "uid 65534" in err and "not trusted" in err, err
    finally:
        fake.kill()
        fake.wait()
