"""netfo/queues.py: the control plane's calls fanned out to every queue's
Datapath, the counters summed.  Without root: real Datapaths and loops,
socketpairs standing in for the TAP queues and the slave sockets (the real
TAP and fanout: tests/lab/test_queues.py)."""
import threading

import pytest

try:
    from netfo import _fastpath as fp
except ImportError as e:        # pragma: no cover - a build without the extension
    pytest.skip(f"netfo._fastpath is not built ({e})", allow_module_level=True)

from netfo.queues import Queues
from test_fastpath_uring import drain, frame, pair, seqs

N = 3


@pytest.fixture
def rig():
    """N queues, each with its 'TAP' and one primary 'slave' socketpair;
    the loops run (threads=1)."""
    taps = [pair() for _ in range(N)]
    wires = [pair() for _ in range(N)]
    q = Queues([fp.Datapath(dp_end.fileno(), fp.RX_ALL, 1, fp.TAP_IO_SYSCALLS)
                for _, dp_end in taps])
    q.set_slave(fp.PRIMARY, [dp_end.detach() for _, dp_end in wires], 0)
    q.set_ready(fp.PRIMARY, True)
    q.set_preferred(fp.PRIMARY)
    threads = [threading.Thread(target=fn, name=name, daemon=True) for name, fn in q.runs(1)]
    for t in threads:
        t.start()
    yield q, [t for t, _ in taps], [w for w, _ in wires]
    q.stop()
    for t in threads:
        t.join(3)
    for a, b in taps:
        a.close()
        b.close()
    for w, _ in wires:
        w.close()


def test_each_queue_forwards_its_own_frames_and_the_sums_add_up(rig):
    q, taps, wires = rig
    assert [name for name, _ in q.runs(1)] == [f"netfo-run-q{i}" for i in range(N)]
    for i in range(N):          # queue i: i + 1 frames each way
        for k in range(i + 1):
            taps[i].send(frame(k))
            wires[i].send(frame(k, 100))
    for i in range(N):
        assert seqs(drain(wires[i], i + 1)) == list(range(i + 1))   # out of its own slave socket
        assert seqs(drain(taps[i], i + 1)) == list(range(i + 1))    # into its own TAP queue
    assert q.ping(1.0)
    st = q.stats()
    assert [s["master"]["tx_packets"] for s in st["queues"]] == [1, 2, 3]
    assert [s["master"]["rx_packets"] for s in st["queues"]] == [1, 2, 3]
    assert st["master"]["tx_packets"] == st["master"]["rx_packets"] == 6
    assert st["slots"][fp.PRIMARY]["rx_bytes"] == 6 * 100


def test_a_decision_holds_for_every_queue(rig):
    q, taps, wires = rig
    assert q.active() == fp.PRIMARY
    q.set_ready(fp.PRIMARY, False)          # no slave ready: every queue drops
    assert q.active() == -1 and [dp.active() for dp in q.dps] == [-1] * N
    t = q.switched_at()         # dated by the first queue that moved
    assert t > 0 and t == min(dp.switched_at() for dp in q.dps)
    for t in taps:
        t.send(frame(0))
    assert all(drain(w, 1, timeout=0.3) == [] for w in wires)
    assert q.stats()["master"]["drop_no_slave"] == N
    q.set_ready(fp.PRIMARY, True)
    assert [dp.active() for dp in q.dps] == [fp.PRIMARY] * N
    # one queue that left the preferred slot on its own speaks for all
    q.dps[1].set_ready(fp.PRIMARY, False)
    assert q.active() == -1
    q.set_slave(fp.PRIMARY, [])             # released: every queue's socket closed
    assert q.fds(fp.PRIMARY) == [] and q.fd(fp.PRIMARY) == -1
