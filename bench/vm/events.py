"""The four events of issue 14 under two 1,000 frames/s UDP streams, and their losses.

Each event gets fresh streams (python -m netfo.lab.stream) in both
directions: guest -> peer (g2p) and peer -> guest (p2g), `seconds` long, the
event at `at` s after both started. A frame is lost when its sequence number
never arrives; counting needs no clock shared by guest and host.

    unplug      device_del the VF (waits for DEVICE_DELETED)
    replug      device_add the VF
    mig-unplug  set_link virtio up, then device_del the VF   (virtio was down)
    mig-replug  device_add the VF, then set_link virtio down at once

A run does them in this order; before mig-unplug the virtio link is set down,
after mig-replug up again (outside the streams), as the migration scripts of
the kernel's net_failover document leave them.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .qemu import GUEST_IP4, GUEST_IP6, MAC, PEER_IP4, PEER_IP6, Vm, VmError

EVENTS = ("unplug", "replug", "mig-unplug", "mig-replug")
VFTRACE = Path(__file__).with_name("vftrace.py")
DIRS = ("g2p", "p2g")
G2P_PORT, P2G_PORT = 5001, 5002


@dataclass
class Streams:
    """rate frames/s each way for seconds, the event at s. A re-plug's
    streams run on until the VF has carried them for `tail` s: in a TCG
    guest the new VF's link can come more than 5 s after device_add, and a
    switch after the streams' end would go unmeasured."""
    rate: float = 1000
    seconds: float = 10
    at: float = 3
    tail: float = 2


def _stream(*args: str) -> list[str]:
    return [sys.executable, "-m", "netfo.lab.stream", *args]


def _env() -> dict:
    import os
    import netfo
    return {**os.environ, "PYTHONPATH": str(Path(netfo.__file__).resolve().parent.parent)}


# ----------------------------------------------------------------- guest setup
def setup(vm: Vm) -> dict:
    """Address the guest's one interface (netfo's master or the kernel's
    failover master) and wait until the peer answers; {"master", "up_s"}."""
    a = vm.agent
    links = a.call("links")["links"]
    nics = [l for l in links if l["mac"] == MAC]
    v6 = [["ip", "-6", "addr", "add", f"{GUEST_IP6}/64", "dev", "{}", "nodad"]] if vm.ipv6 else []
    info: dict = {"up_s": None}
    if vm.mode == "kernel":
        uppers = {l["upper"] for l in nics if l["upper"]}
        if len(uppers) != 1:
            raise VmError(f"no single net_failover master in the guest: {nics}")
        master = uppers.pop()
        for cmd in (["ip", "link", "set", master, "up"],
                    ["ip", "addr", "add", f"{GUEST_IP4}/24", "dev", master], *v6):
            a.run(*[master if x == "{}" else x for x in cmd])
    else:
        virtio = [l["name"] for l in nics if l["driver"] == "virtio_net"]
        if len(virtio) != 1:
            raise VmError(f"no single virtio-net NIC in the guest: {nics}")
        master = virtio[0]
        for cmd in (["ip", "addr", "add", f"{GUEST_IP4}/24", "dev", master], *v6,
                    ["ip", "link", "set", master, "up"]):
            a.run(*[master if x == "{}" else x for x in cmd])
        r = a.run(sys.executable, "-m", "netfo", "up", master, timeout=180)
        info["up_s"] = round(r["took"], 2)
    info["master"] = master
    reachable(vm)
    return info


def reachable(vm: Vm, timeout: float = 30) -> None:
    """The guest pings the peer. Guest first: the host bridge learns the guest's
    MAC from what it sends, and net_failover drops what arrives on the standby
    while a primary is registered, so a ping from the peer may go unanswered
    until the guest has sent something through the VF."""
    end = time.monotonic() + timeout
    dst = PEER_IP6 if vm.ipv6 else PEER_IP4
    while time.monotonic() < end:
        if vm.agent.run("ping", "-c1", "-W1", dst, check=False)["rc"] == 0:
            return
    raise VmError(f"the guest cannot reach the peer at {dst} within {timeout:g} s")


def vf_ready(vm: Vm, timeout: float = 30) -> None:
    """The re-plugged VF exists in the guest with carrier."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for l in vm.agent.call("links")["links"]:
            if l["driver"] == "e1000e" and l["carrier"]:
                return
        time.sleep(0.3)
    raise VmError(f"the re-plugged VF has no carrier in the guest after {timeout:g} s")


# --------------------------------------------------------------------- streams
class _GuestProc:
    """A stream tool in the guest, its JSON lines read from the xfer share."""

    def __init__(self, vm: Vm, name: str, argv: list[str]) -> None:
        self.vm, self.name = vm, name
        self.path = vm.dir / "xfer" / f"{name}.out"
        vm.agent.call("spawn", name=name, argv=argv)

    def line(self, event: str, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                for raw in self.path.read_text().splitlines():
                    try:
                        obj = json.loads(raw)
                    except ValueError:
                        continue                # a line still being written
                    if obj.get("event") == event:
                        return obj
            except OSError:
                pass
            time.sleep(0.1)
        err = (self.path.with_suffix(".err")).read_text(errors="replace").strip()[-300:]
        raise VmError(f"guest {self.name}: no {event} line within {timeout:g} s {err}")

    def stop(self) -> dict:
        self.vm.agent.call("stop", name=self.name)
        return self.line("result", 10)


class _PeerProc:
    def __init__(self, vm: Vm, argv: list[str]) -> None:
        self.p = subprocess.Popen(vm.peer_argv(*argv), stdout=subprocess.PIPE, text=True,
                                  env=_env())

    def line(self, event: str, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:   # the tools print ready at once, result at the end
            raw = self.p.stdout.readline()
            if not raw:
                break
            obj = json.loads(raw)
            if obj.get("event") == event:
                return obj
        raise VmError(f"peer stream tool: no {event} line")

    def stop(self) -> dict:
        self.p.terminate()
        return self.line("result", 10)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def _loss(sent: int, rate: float, got: list[int]) -> dict:
    seen = sorted(set(s for s in got if s < sent))
    gap, prev = 0, -1
    for s in seen + [sent]:
        gap = max(gap, s - prev - 1)
        prev = s
    return {"sent": sent, "lost": sent - len(seen), "longest_gap_ms": round(gap / rate * 1000, 1),
            # frames of the last half second arrived: the outage is inside the window
            "recovered": bool(seen) and seen[-1] >= sent - rate / 2}


def measure(vm: Vm, event: str, s: Streams, n: int) -> dict:
    """One event under both streams; {"g2p": loss, "p2g": loss, "event_s": ...}."""
    dst_peer = PEER_IP6 if vm.ipv6 else PEER_IP4
    dst_guest = GUEST_IP6 if vm.ipv6 else GUEST_IP4
    replug = event in ("replug", "mig-replug")
    rate = str(s.rate)
    length = [] if replug else ["--seconds", str(s.seconds)]      # replug: until stopped
    peer_recv = _PeerProc(vm, _stream("recv", str(G2P_PORT)))
    procs: list = [peer_recv]
    try:
        peer_recv.line("ready", 30)
        guest_recv = _GuestProc(vm, f"recv{n}", _stream("recv", str(P2G_PORT)))
        guest_recv.line("ready", 60)
        guest_send = _GuestProc(vm, f"send{n}", _stream("send", dst_peer, str(G2P_PORT),
                                                        "--rate", rate, *length))
        guest_send.line("ready", 60)
        trace = None
        if replug:
            trace = _GuestProc(vm, f"vftrace{n}", [sys.executable, str(VFTRACE), "e1000e", "30"])
            trace.line("ready", 60)
        peer_send = _PeerProc(vm, _stream("send", dst_guest, str(P2G_PORT),
                                          "--rate", rate, *length))
        procs.append(peer_send)
        peer_send.line("ready", 30)
        started = time.monotonic()
        time.sleep(s.at)
        t0 = time.monotonic()
        do(vm, event)
        took = time.monotonic() - t0
        vf = None
        if replug:
            vf = trace.line("result", 40)    # the VF's first frame out (or vftrace gave up)
            time.sleep(max(s.tail, s.seconds - s.at - (time.monotonic() - t0)))
            sent_p = peer_send.stop()
            sent_g = guest_send.stop()
            trace.stop()                     # reaps it
        else:
            sent_p = peer_send.line("result", s.seconds + 30)
            sent_g = guest_send.line("result", s.seconds + 30)
        time.sleep(1.0)                      # the last frames in flight
        got_p = peer_recv.stop()
        got_g = guest_recv.stop()
        if not replug:
            guest_send.stop()                # reaps it
    finally:
        for p in procs:
            p.kill()
    out = {"event_s": round(took, 3), "late_s": round(t0 - started - s.at, 3),
           "g2p": _loss(sent_g["sent"], s.rate, got_p["seqs"]),
           "p2g": _loss(sent_p["sent"], s.rate, got_g["seqs"])}
    if vf is not None:
        out["vf"] = {k: v for k, v in vf.items() if k != "event"}
    out["g2p"]["send_errors"] = sent_g["send_errors"]
    out["p2g"]["send_errors"] = sent_p["send_errors"]
    return out


def do(vm: Vm, event: str) -> None:
    if event == "unplug":
        vm.unplug()
    elif event == "replug":
        vm.plug()
    elif event == "mig-unplug":
        vm.set_virtio_link(True)
        vm.unplug()
    elif event == "mig-replug":
        vm.plug()
        vm.set_virtio_link(False)
    else:
        raise ValueError(event)


def settle(vm: Vm, event: str) -> None:
    """Back to a steady state before the next event (outside the streams)."""
    if event in ("replug", "mig-replug"):
        vf_ready(vm)
    time.sleep(1.0)
    reachable(vm)


def series(vm: Vm, runs: int, s: Streams, progress, events=EVENTS) -> list[dict]:
    out, n = [], 0
    for run in range(runs):
        for ev in events:
            n += 1
            progress.step(f"{vm.mode} run {run + 1}/{runs}", ev, s.seconds + 8)
            if ev == "mig-unplug":          # the migration starts with the standby down
                vm.set_virtio_link(False)
                settle(vm, ev)
            r = measure(vm, ev, s, n)
            r.update(mode=vm.mode, event=ev, run=run + 1)
            out.append(r)
            if ev == "mig-replug":          # and ends with it down: up again for the next run
                vm.set_virtio_link(True)
            settle(vm, ev)
    return out


# ------------------------------------------------------------------- the table
def summary(results: list[dict], modes: tuple[str, ...]) -> dict:
    """{event: {mode: {dir: {"min", "median", "max", "n", "unrecovered"}}}}"""
    table: dict = {}
    for ev in EVENTS:
        for mode in modes:
            rs = [r for r in results if r["event"] == ev and r["mode"] == mode]
            if not rs:
                continue
            for d in DIRS:
                lost = [r[d]["lost"] for r in rs]
                table.setdefault(ev, {}).setdefault(mode, {})[d] = {
                    "min": min(lost), "median": statistics.median(lost), "max": max(lost),
                    "n": len(lost), "unrecovered": sum(not r[d]["recovered"] for r in rs)}
    return table


def _cell(c: dict | None) -> str:
    if c is None:
        return "-"
    rng = f"{c['min']:,}" if c["min"] == c["max"] else \
        f"{c['min']:,}–{c['max']:,} (med {c['median']:,.0f})"
    mark = f" ({c['unrecovered']} not recovered)" if c["unrecovered"] else ""
    return rng + mark


def _ratio(a: dict | None, b: dict | None) -> str:
    if a is None or b is None:
        return "-"
    x, y = a["median"], b["median"]
    if x == y:
        return "="
    if y == 0:
        return "kernel 0"
    return "0×" if x == 0 else f"{x / y:.2f}×"


VF_STEPS = (("appeared → up", None, "up_ms"), ("up → carrier", "up_ms", "carrier_ms"),
            ("carrier → first frame out", "carrier_ms", "first_tx_ms"),
            ("standby's carrier lost → first frame out", "standby_down_ms", "first_tx_ms"))


def vf_table(results: list[dict], modes: tuple[str, ...]) -> str:
    """The re-plugged VF's timeline (vftrace.py), median ms per mode: the
    NIC's own link time (up -> carrier) against what the driver adds; in
    the migration re-plug, the whole outage as the guest saw it."""
    rows = ["| re-plug, median ms (min–max) | " + " | ".join(modes) + " |",
            "|---|" + "---|" * len(modes)]
    for ev in ("replug", "mig-replug"):
        for label, a, b in VF_STEPS:
            cells = []
            for mode in modes:
                ms = [r["vf"][b] - (r["vf"][a] if a else 0) for r in results
                      if r["event"] == ev and r["mode"] == mode and b in r.get("vf", {})
                      and (a is None or a in r["vf"])]
                cells.append(f"{statistics.median(ms):,.0f} ({min(ms):,.0f}–{max(ms):,.0f})"
                             if ms else "-")
            rows.append(f"| {ev}: {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def table(summ: dict) -> str:
    head = ("| event | netfo g→p | netfo p→g | kernel g→p | kernel p→g "
            "| netfo/kernel g→p | netfo/kernel p→g |\n|---|---|---|---|---|---|---|")
    rows = [head]
    for ev, by_mode in summ.items():
        n, k = by_mode.get("netfo", {}), by_mode.get("kernel", {})
        rows.append(f"| {ev} | {_cell(n.get('g2p'))} | {_cell(n.get('p2g'))} | "
                    f"{_cell(k.get('g2p'))} | {_cell(k.get('p2g'))} | "
                    f"{_ratio(n.get('g2p'), k.get('g2p'))} | {_ratio(n.get('p2g'), k.get('p2g'))} |")
    return "\n".join(rows)
