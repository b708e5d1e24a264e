"""Traffic helpers for lab tests: ping, sequence streams, wire captures."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class PingResult:
    sent: int
    received: int
    duplicates: int


def ping(lab, ns: str, dst: str, count: int = 10, interval: float = 0.05,
         extra: tuple = ()) -> PingResult:
    p = lab.run(ns, "ping", "-c", str(count), "-i", str(interval), "-W", "1", *extra, dst,
                check=False, timeout=count * interval + 15)
    m = re.search(r"(\d+) packets transmitted, (\d+) received(?:, \+(\d+) duplicates)?", p.stdout)
    assert m, f"ping output not understood: {p.stdout} {p.stderr}"
    return PingResult(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


class Stream:
    """A one-way sequence-numbered UDP stream between two namespaces."""

    def __init__(self, lab, src_ns: str, dst_ns: str, dst_ip: str, port: int,
                 rate: float, seconds: float):
        py = sys.executable
        self.rx = lab.popen(dst_ns, py, f"{HERE}/streamer.py", "recv", str(port), str(seconds + 1.5),
                            stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        self.tx = lab.popen(src_ns, py, f"{HERE}/streamer.py", "send", dst_ip, str(port),
                            str(rate), str(seconds), stdout=subprocess.PIPE, text=True)
        self.rate = rate

    def result(self) -> dict:
        sent = json.loads(self.tx.communicate(timeout=60)[0])["sent"]
        got = json.loads(self.rx.communicate(timeout=60)[0])
        seqs, times = got["seqs"], got["times"]
        gaps = [b - a for a, b in zip(times, times[1:])]
        return {"sent": sent, "received": len(seqs), "unique": len(set(seqs)),
                "lost": sent - len(set(seqs)), "duplicates": len(seqs) - len(set(seqs)),
                "max_gap": max(gaps, default=0.0), "seqs": seqs, "times": times}


class Capture:
    """tcpdump on one interface of a namespace; frames dissected with scapy.

    --immediate-mode: otherwise libpcap's TPACKET_V3 ring hands frames over
    only when a block retires (full, or after ~1 s), and frames still in the
    open block when tcpdump is stopped are never written.
    """

    def __init__(self, lab, ns: str, ifname: str, bpf: str = "", inbound: bool = False):
        """inbound: only frames ifname received (-Q in), e.g. what a guest NIC sent."""
        self.path = f"/tmp/netfo-cap-{lab.prefix}-{ns}-{ifname}-{os.getpid()}.pcap"
        self.proc = lab.popen(ns, "tcpdump", "--immediate-mode", "-i", ifname, "-U", "-n",
                              *(["-Q", "in"] if inbound else []), "-w", self.path,
                              *bpf.split(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # tcpdump says "listening on" once the socket is bound
        line = self.proc.stderr.readline()
        if "listening" not in line:
            raise AssertionError(f"tcpdump -i {ifname} in {ns} failed: {line}")

    def frames(self):
        import scapy.layers.all  # noqa: F401  (registers Ethernet and friends)
        from scapy.utils import rdpcap
        time.sleep(0.2)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10)
        try:
            return list(rdpcap(self.path))
        finally:
            os.unlink(self.path)

