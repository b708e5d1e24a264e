"""The demo's analysis, report and plot, on a made-up run (no root)."""
import pytest


def _fake_run(rate: float = 1000.0):
    """Two 3 s streams at `rate`, steps at 1.0-1.1 s; guest->peer loses
    seq 1017-1026 (due during step 2), peer->guest loses seq 1500 (after the migration)."""
    from netfo.lab.demo.analysis import Run, Step
    t0 = 100.0
    run = Run("x", rate, started=t0, ended=t0 + 3.2)
    for i in range(1, 8):
        start = t0 + 1.0 + (i - 1) * 0.015
        run.steps.append(Step(i, f"source: step {i}", "", start, start + 0.01))
    n = int(3 * rate)
    for key, lost in (("guest_to_peer", set(range(1017, 1027))), ("peer_to_guest", {1500})):
        seqs = [s for s in range(n) if s not in lost]
        times = [t0 + s / rate + 0.0005 for s in seqs]
        run.streams[key] = ({"rate": rate, "start": t0, "sent": n, "send_errors": {}},
                            {"seqs": seqs, "times": times})
    run.samples = [{"t": t0 + k * 0.05, "active": "primary" if not 20 <= k < 23 else "standby"}
                   for k in range(64)]
    run.tcp = {"connected_at": t0 - 0.1, "error": None, "exchanges": 300,
               "done": [t0 + k * 0.01 for k in range(300)], "rtt_ms": [0.2] * 300}
    return run


def test_analysis_attributes_losses_to_steps():
    from netfo.lab.demo.analysis import analyse
    from netfo.lab.demo.report import format_report
    rep = analyse(_fake_run())
    g, p = rep["directions"]["guest_to_peer"], rep["directions"]["peer_to_guest"]
    assert g["lost"] == 10 and g["lost_by_step"]["2"] == 10 and sum(g["lost_by_step"].values()) == 10
    assert p["lost"] == 1 and p["lost_by_step"]["after"] == 1
    assert 10.5 <= g["max_gap_ms"] <= 11.5 and g["longest_loss_run"] == 10
    assert rep["survived"] and rep["transmitting_before"] == ["primary"]
    assert [s["transmitting"] for s in rep["steps"]][0] == ["primary", "standby"]
    text = format_report(rep)
    assert "OK: connectivity survived" in text and "lost 10 guest→peer / 1 peer→guest" in text


def test_analysis_fails_a_stream_that_stopped():
    from netfo.lab.demo.analysis import analyse
    run = _fake_run()
    tx, rx = run.streams["peer_to_guest"]
    keep = [i for i, s in enumerate(rx["seqs"]) if s < 1200]        # nothing after 1.2 s
    rx["seqs"] = [rx["seqs"][i] for i in keep]
    rx["times"] = [rx["times"][i] for i in keep]
    rep = analyse(run)
    assert not rep["survived"]
    assert "peer→guest" in rep["verdict"] and "did NOT survive" in rep["verdict"]


def test_plot_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from netfo.lab.demo.analysis import analyse
    from netfo.lab.demo.plot import plot
    run = _fake_run()
    path = tmp_path / "demo.png"
    plot(run, analyse(run), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
