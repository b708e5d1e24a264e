"""The guest's side of the host's commands: runs in the guest, on a serial port.

Why a serial port: the guest's NICs are what the bench breaks, so commands
cannot travel over them. One JSON line per request, one per answer:

    {"op": "run", "argv": [...], "timeout": s}      -> {"rc", "out", "err", "took"}
    {"op": "spawn", "name": N, "argv": [...]}       -> {"pid"}; stdout to /run/xfer/N.out
    {"op": "stop", "name": N}                       -> {"rc"} (SIGTERM, then wait)
    {"op": "links"}                                 -> {"links": [{name, driver, mac, ...}]}

Bulk output (stream results) goes to /run/xfer, a 9p share the host reads.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tty

XFER = "/run/xfer"


def links() -> list[dict]:
    out = []
    for name in sorted(os.listdir("/sys/class/net")):
        base = f"/sys/class/net/{name}"

        def rd(f: str) -> str:
            try:
                with open(f"{base}/{f}") as fh:
                    return fh.read().strip()
            except OSError:
                return ""
        drv = os.path.basename(os.path.realpath(f"{base}/device/driver")) \
            if os.path.exists(f"{base}/device/driver") else ""
        uppers = [e[len("upper_"):] for e in os.listdir(base) if e.startswith("upper_")]
        out.append({"name": name, "driver": drv, "mac": rd("address"), "up": rd("operstate"),
                    "carrier": rd("carrier") == "1", "upper": uppers[0] if uppers else None})
    return out


def main(port: str) -> int:
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    rx, tx = os.fdopen(fd, "rb", buffering=0), os.fdopen(os.dup(fd), "wb", buffering=0)
    procs: dict[str, subprocess.Popen] = {}

    def answer(obj: dict) -> None:
        tx.write(json.dumps(obj).encode() + b"\n")

    answer({"event": "ready", "uptime": float(open("/proc/uptime").read().split()[0])})
    buf = b""
    while True:
        chunk = rx.read(4096)
        if not chunk:
            time.sleep(0.01)
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.strip()
            if not line:
                continue
            try:
                req = json.loads(line)
            except ValueError:
                answer({"error": f"bad request {line[:80]!r}"})
                continue
            try:
                answer({"id": req.get("id"), **handle(req, procs)})
            except Exception as e:          # the agent must outlive any one request
                answer({"id": req.get("id"), "error": f"{type(e).__name__}: {e}"})


def handle(req: dict, procs: dict[str, subprocess.Popen]) -> dict:
    op = req["op"]
    if op == "run":
        t0 = time.monotonic()
        p = subprocess.run(req["argv"], capture_output=True, text=True,
                           timeout=req.get("timeout", 120))
        return {"rc": p.returncode, "out": p.stdout, "err": p.stderr,
                "took": time.monotonic() - t0}
    if op == "spawn":
        name = req["name"]
        with open(f"{XFER}/{name}.out", "wb") as out, open(f"{XFER}/{name}.err", "wb") as err:
            procs[name] = subprocess.Popen(req["argv"], stdout=out, stderr=err)
        return {"pid": procs[name].pid}
    if op == "stop":
        p = procs.pop(req["name"])
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(req.get("timeout", 20))
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        return {"rc": rc}
    if op == "links":
        return {"links": links()}
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
