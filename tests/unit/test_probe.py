"""The prober's judgement of paths, without sockets."""
from netfo import frames
from netfo.group import Role
from netfo.probe import Prober, Verdict

MAC = "52:54:00:00:12:53"
TARGET = "192.0.2.1"
P, S = Role.PRIMARY, Role.STANDBY


def prober():
    return Prober([TARGET], [], interval=0.1, missed=3)


def reply_from(ip):
    """An ARP frame whose sender is ip (what an observer hears)."""
    return frames.arp_request("02:00:00:00:00:01", ip, "192.0.2.100")


def test_disabled_without_targets():
    assert not Prober([], [], 0.1, 3).enabled and prober().enabled


def test_new_slaves_get_a_grace_period():
    p = prober()
    assert p.judge([P, S], P, now=10.0) == []
    assert p.judge([P, S], P, now=10.25) == []      # within the 300 ms window


def test_answers_keep_a_path_up_and_silence_takes_it_down():
    p = prober()
    p.judge([P, S], P, 10.0)
    p.heard(P, reply_from(TARGET), set(), 10.25)
    p.heard(S, reply_from("198.51.100.7"), set(), 10.25)     # not a target: ignored
    p.heard(S, reply_from("192.0.2.50"), {"192.0.2.50"}, 10.25)  # the master's own probe, flooded
    assert p.judge([P, S], P, 10.5) == []
    assert p.judge([P, S], P, 10.6) == [Verdict(P, False)]
    assert p.down == {P}
    assert p.judge([P, S], S, 10.7) == []            # said once


def test_the_others_get_a_fresh_grace_when_the_active_path_dies():
    p = prober()
    p.judge([P, S], P, 10.0)
    # Both silent: only the active one is judged; the standby heard the
    # flooded probes of a path that is dead now, its silence says nothing.
    assert p.judge([P, S], P, 10.5) == [Verdict(P, False)]
    assert p.last_heard[S] == 10.5
    assert p.judge([P, S], S, 10.7) == []
    # The standby dies too: now the primary gets the fresh grace, and is
    # taken back on trial (probed directly, judged again in 300 ms).
    assert p.judge([P, S], S, 10.9) == [Verdict(S, False), Verdict(P, True)]


def test_a_dead_path_is_probed_directly_and_comes_back():
    p = prober()
    p.judge([P, S], P, 10.0)
    p.heard(S, reply_from(TARGET), set(), 10.45)
    p.judge([P, S], P, 10.5)
    assert p.down == {P}
    assert p.sources(S, [P, S]) == {P, S}            # the active one and the broken one
    assert p.sources(None, [P, S]) == {P}
    p.heard(P, reply_from(TARGET), set(), 10.55)
    assert p.judge([P, S], S, 10.6) == [Verdict(P, True)]
    assert p.sources(S, [P, S]) == {S}


def test_the_active_one_is_judged_first():
    p = prober()
    p.judge([P, S], S, 10.0)
    assert p.judge([P, S], S, 10.5) == [Verdict(S, False)]   # and P got a grace


def test_forget_gives_a_new_slave_a_clean_start():
    p = prober()
    p.judge([P, S], P, 10.0)
    p.judge([P, S], P, 10.5)
    p.forget(P)
    assert p.down == set() and P not in p.last_heard
    assert p.judge([P, S], P, 20.0) == [Verdict(S, False)]    # S has been silent since 10.5


def test_probe_frames_for_both_families():
    p = Prober([TARGET], ["fd00::1"], 0.1, 3)
    out = p.frames(MAC, {"ip4": ["192.0.2.10"], "ip6": ["fe80::1", "fd00::10"]})
    assert len(out) == 2
    assert frames.sender(out[0]) == "192.0.2.10"


def test_missed_rounds_are_counted_for_status_and_metrics():
    p = prober()
    p.judge([P, S], P, 10.0)                        # a first round counts no miss
    assert p.state(P) == {"up": True, "misses": 0, "missed_total": 0}
    p.heard(P, reply_from(TARGET), set(), 10.05)
    p.judge([P, S], P, 10.1)
    p.judge([P, S], P, 10.2)
    p.judge([P, S], P, 10.3)
    assert p.state(P) == {"up": True, "misses": 2, "missed_total": 2}
    assert p.state(S)["missed_total"] == 3
    p.judge([P, S], P, 10.45)                       # 350 ms of silence: down
    assert p.state(P) == {"up": False, "misses": 3, "missed_total": 3}
    p.heard(P, reply_from(TARGET), set(), 10.5)
    p.judge([P, S], S, 10.55)
    assert p.state(P) == {"up": True, "misses": 0, "missed_total": 3}
    p.forget(P)
    assert p.state(P) == {"up": True, "misses": 0, "missed_total": 0}
