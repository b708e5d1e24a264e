"""netfo auto in a lab's guest namespace: the master appears by itself once
the VF is plugged, forwards, and outlives `netfo auto`."""
import json
import os
import signal
import subprocess
import time

from netfo import spawn
from netfo.lab import PEER_IP4
from netfo.lab.harness import cli

from support.traffic import ping


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _logs(lab, logfile) -> str:
    """What netfo auto and the master's daemons said, for a failure's report."""
    ino = os.stat(f"/var/run/netns/{lab.guest}").st_ino
    out = []
    for title, path in (("netfo auto", str(logfile)), ("the daemons", f"/run/netfo/net{ino}-ens10.log")):
        try:
            with open(path) as f:
                out.append(f"--- {title}:\n{f.read()}")
        except OSError as e:
            out.append(f"--- {title}: {e}")
    return "\n".join(out)


def status(lab):
    p = cli(lab.guest, "status", "ens10", "--json")
    return json.loads(p.stdout) if p.returncode == 0 else None


def test_auto_makes_the_master_when_the_vf_appears_and_leaves_it_running(lab, tmp_path):
    conf = tmp_path / "netfo.conf"
    conf.write_text("[auto]\ninterfaces = ens10\noptions = --notify-count 1\n")
    logfile = tmp_path / "auto.log"
    lab.unplug()                                    # only the virtio NIC: nothing to do yet
    with open(logfile, "w") as logf:
        proc = subprocess.Popen(["ip", "netns", "exec", lab.guest,
                                 *spawn.netfo("auto", "--config", str(conf))],
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                cwd=spawn.NEUTRAL_CWD, start_new_session=True)
    try:
        wait_for(lambda: "following link events" in logfile.read_text(), 15, "netfo auto")
        time.sleep(0.5)
        assert status(lab) is None, "a master without a same-MAC partner"
        lab.plug()                                  # the VF appears (admin down)
        st = wait_for(lambda: (s := status(lab)) and s["active"] == "primary" and s, 20,
                      "the master, transmitting via the VF")
        assert {s["role"]: s["name"] for s in st["slaves"]} == {"primary": "ens11",
                                                              "standby": "ens10nsby"}
        r = ping(lab, "guest", PEER_IP4, count=10)
        assert (r.received, r.duplicates) == (10, 0)
        p = cli(lab.guest, "status", "ens10", "--check")
        assert (p.returncode, p.stdout.strip()) == (0, "OK: ens10 transmits via primary ens11")
        os.kill(st["pid"], signal.SIGKILL)          # the master's daemon dies: auto adopts it
        st = wait_for(lambda: (s := status(lab)) and s["pid"] != st["pid"] and s, 20,
                      "the master adopted by a new daemon")
        assert st["adopted"] and st["active"] == "primary"
        pid = st["pid"]
        time.sleep(1.5)                             # a few more scans: nothing else started
        assert "ens10nsby" not in logfile.read_text().split("following link events", 1)[1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        st = status(lab)
        assert st is not None and st["pid"] == pid, "the master went with netfo auto"
        r = ping(lab, "guest", PEER_IP4, count=5)
        assert r.received == 5
    except AssertionError as e:
        raise AssertionError(f"{e}\n{_logs(lab, logfile)}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cli(lab.guest, "down", "ens10")
    log = logfile.read_text()
    assert "ens10: started" in log, log
