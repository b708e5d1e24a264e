"""A short run of the lab benchmark (python3 -m bench), as CI runs it.

Benchmarks are not part of CI's pass/fail; this only checks that the bench
runs end to end, measures something in both directions, and leaves no
namespace behind.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(os.geteuid() != 0, reason="the bench needs root (network namespaces)")
def test_bench_quick_smoke(tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--paths", "direct,netfo", "--modes", "offload",
         "--json", str(out), "--plot", str(png), "--tcp-seconds", "1", "--udp-seconds", "0.5",
         "--ping-count", "50"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-2000:]
    results = json.loads(out.read_text())["results"]["offload"]
    for path in ("direct", "netfo"):
        assert not results[path]["errors"], results[path]["errors"]
        for d in ("g2n", "n2g"):
            assert results[path]["tcp"][d]["gbps"] > 0, (path, d)
            assert results[path]["ping"][d]["received"] > 0, (path, d)
    assert "TCP throughput" in stdout
    # The bench names its labs nb<pid % 10000>-...: none may be left.
    prefix = f"nb{proc.pid % 10000}-"
    left = [n for n in os.listdir("/var/run/netns") if n.startswith(prefix)] \
        if os.path.isdir("/var/run/netns") else []
    assert not left, f"namespaces left behind: {left}"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "chart skipped" in stdout
    else:
        assert png.stat().st_size > 0
