"""Micro-benchmarks: the forwarding loop alone, frames per second.

    python3 -m pytest bench/test_micro.py --benchmark-only

netfo's Cython Datapath (TAP via read()/write(), and via io_uring:
"netfo-uring", where the kernel has multishot reads) and the pure-Python
reference forwarder
(bench/reference_forwarder.py) each drain N queued frames, per frame size
and direction, over a real TAP and veth pair (bench/microlab.py).  The
pytest-benchmark table shows seconds per round; the summary at the end gives
the median frames/s and the Cython/Python ratio.  Needs root.
"""
from __future__ import annotations

import os
import statistics

import pytest

pytest.importorskip("pytest_benchmark")
if os.geteuid() != 0:
    pytest.skip("micro-benchmarks need root (network namespace, TAP)", allow_module_level=True)

from bench import microlab  # noqa: E402
from netfo.kernel.tap import VNET_HDR_LEN  # noqa: E402

FRAMES = {"64": 100_000, "1500": 50_000, "64k": 3_000}     # per round: 0.1-0.5 s each
ROUNDS = 5


@pytest.fixture(scope="module")
def rig():
    with microlab.MicroLab() as ml:
        yield ml


@pytest.fixture(scope="module", params=["netfo", "netfo-uring", "python"])
def forwarder(request, rig):
    if request.param == "netfo-uring":
        from netfo import _fastpath
        if _fastpath.uring_problem():
            pytest.skip(_fastpath.uring_problem())
    fwd = microlab.Forwarder(rig, request.param)
    try:
        yield request.param, fwd
    finally:
        fwd.close()


@pytest.mark.parametrize("size", list(FRAMES))
@pytest.mark.parametrize("direction", microlab.DIRECTIONS)
def test_forward(benchmark, rig, forwarder, direction, size):
    impl, fwd = forwarder
    data = microlab.frame(size, direction)
    per_frame = microlab.bytes_per_frame(rig, fwd, direction, data)
    n = FRAMES[size]
    rounds: list[tuple] = []

    def target():
        rounds.append(microlab.run_round(rig, fwd, direction, n * per_frame))

    benchmark.group = f"{size}-byte frames, {direction}"
    benchmark.pedantic(target, setup=lambda: rig.fill(direction, data, n),
                       rounds=ROUNDS, iterations=1)
    fps = [got / per_frame / secs for secs, got in rounds if secs > 0]
    lost = n * len(rounds) - sum(got for _, got in rounds) // per_frame
    med = statistics.median(fps)
    benchmark.extra_info.update(frames_per_round=n, frames_per_s_median=med,
                                gbit_per_s_median=med * (len(data) - VNET_HDR_LEN) * 8 / 1e9, lost=lost)
    microlab.RESULTS.append({"impl": impl, "direction": direction, "size": size,
                             "fps": med, "gbps": med * (len(data) - VNET_HDR_LEN) * 8 / 1e9, "lost": lost})
    assert lost == 0, f"{lost} frames lost"


@pytest.mark.parametrize("batch", ["one-flow", "32-flows"])
def test_gro_batch(benchmark, batch):
    """--gro's own cost on one receive batch of 32 MTU-sized TCP segments
    with full checksums (wire mode: each is verified before it is merged):
    one-flow merges them into one frame; 32-flows merges nothing (each is
    parsed and compared only). Timed through _fastpath.gro_coalesce, whose
    copying in and out is included (an upper bound of the loop's cost)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from netfo import _fastpath
    mss, hdr = 1448, b"\0" * VNET_HDR_LEN
    segs = [hdr + bytes(Ether() / IP(src="10.0.0.2", dst="10.0.0.1", id=i, flags="DF")
                        / TCP(sport=40000 if batch == "one-flow" else 1000 + i, dport=5201,
                              seq=1 + i * mss, ack=1, flags="A") / Raw(os.urandom(mss)))
            for i in range(_fastpath.BATCH)]
    benchmark.group = "gro: one batch of 32 MTU-sized segments"
    out, merged = benchmark(_fastpath.gro_coalesce, segs)
    assert merged == (_fastpath.BATCH - 1 if batch == "one-flow" else 0)
