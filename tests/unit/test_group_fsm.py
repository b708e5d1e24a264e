"""The group's states, its transition table and the Decisions it returns."""
import random

import pytest

from netfo.events import RING, EventLog
from netfo.group import (CARRIER, TRANSITIONS, TRANSMITS, Group, Input, Policy, Role, State,
                         TransitionError)

from test_group import MAC, link


class Clocks:
    def __init__(self):
        self.mono, self.wall = 100.0, 1_700_000_000.0

    def tick(self, dt):
        self.mono += dt
        self.wall += dt


def make(**policy):
    c = Clocks()
    g = Group("ens10", MAC, standby_index=2, master_index=9, policy=Policy(**policy),
              clock=lambda: c.mono, wall=lambda: c.wall)
    return g, c


def test_table_covers_every_state_and_never_loops_on_itself():
    assert set(TRANSITIONS) == set(State)
    for state, nxt in TRANSITIONS.items():
        assert state not in nxt and nxt <= set(State)
    assert State.HOLDING not in TRANSITIONS[State.DOWN]     # downdelay holds a carrier it had


def test_a_move_outside_the_table_is_refused():
    g, _ = make()
    with pytest.raises(TransitionError):
        g._enter(State.HOLDING, "delay")
    assert g.state == State.DOWN


def test_first_slave_brings_the_master_up_and_announces():
    g, c = make()
    d = g.link_changed(link(2, "ens10nsby"))
    assert d.input == Input.LINK
    assert (d.state, d.active, d.carrier, d.announce) == (State.STANDBY, Role.STANDBY, True, True)
    assert d.ready == {Role.STANDBY} and [type(a).__name__ for a in d.actions] == ["Enslave"]
    kinds = [e["kind"] for e in d.events]
    assert kinds == ["switch", "carrier"]
    sw, car = d.events
    assert (sw["from"], sw["to"], sw["slave"], sw["reason"]) == (None, "standby", "ens10nsby", "carrier")
    assert car["carrier"] is True
    for e in d.events:                          # both clocks and the master's name
        assert (e["time"], e["mono"], e["master"]) == (c.wall, c.mono, "ens10")


def test_switch_to_the_primary_announces_and_keeps_the_carrier():
    g, c = make()
    g.link_changed(link(2, "ens10nsby"))
    c.tick(1)
    d = g.link_changed(link(3, "ens11"))
    assert (d.state, d.active, d.announce, d.carrier) == (State.PRIMARY, Role.PRIMARY, True, True)
    assert [e["kind"] for e in d.events] == ["switch"]          # no carrier change
    assert g.failovers == 1 and g.last_failover == c.wall       # the wall clock, injected


def test_downdelay_holds_then_drops_the_carrier():
    g, c = make(downdelay=0.3)
    g.link_changed(link(2, "ens10nsby"))
    d = g.link_changed(link(2, "ens10nsby", carrier=False))
    assert (d.state, d.active, d.carrier, d.announce) == (State.HOLDING, None, True, False)
    assert [(e["kind"], e.get("to")) for e in d.events] == [("switch", None)]
    assert d.ready == frozenset()
    c.tick(0.2)
    assert g.tick().state == State.HOLDING
    c.tick(0.1)
    d = g.tick()
    assert (d.state, d.carrier) == (State.DOWN, False)
    assert [(e["kind"], e["carrier"]) for e in d.events] == [("carrier", False)]
    d = g.link_changed(link(2, "ens10nsby"))
    assert (d.state, d.carrier, d.announce) == (State.STANDBY, True, True)


def test_holding_goes_straight_to_a_slave_that_comes_back():
    g, c = make(downdelay=5)
    g.link_changed(link(2, "ens10nsby"))
    g.link_changed(link(2, "ens10nsby", carrier=False))
    d = g.link_changed(link(2, "ens10nsby"))
    assert (d.state, d.announce) == (State.STANDBY, True)
    assert [e["kind"] for e in d.events] == ["switch"]          # the carrier never dropped


def test_a_switch_the_loop_made_is_recorded_and_announced_once():
    g, c = make()
    g.link_changed(link(2, "ens10nsby"))
    g.link_changed(link(3, "ens11"))
    d = g.loop_switched(Role.STANDBY, "send-error")
    assert d.input == Input.LOOP and d.announce
    assert d.active == Role.PRIMARY                  # the group's choice stands
    (e,) = d.events
    assert (e["kind"], e["from"], e["to"], e["slave"], e["reason"]) == (
        "switch", "primary", "standby", "ens10nsby", "send-error")
    assert g.failovers == 1                          # counted when the group follows
    assert not g.loop_switched(Role.STANDBY, None).announce
    d = g.link_removed(3)                            # netlink catches up
    assert d.active == Role.STANDBY and not d.announce   # frames already left there
    assert g.failovers == 2


def test_a_hold_the_loop_read_itself_is_no_event_but_is_announced():
    g, c = make()
    g.link_changed(link(2, "ens10nsby"))
    g.link_changed(link(3, "ens11"))
    d = g.loop_switched(Role.STANDBY)
    assert d.announce and d.events == ()
    # the hold ends (the link was fine after all): frames go back, announce there
    d = g.loop_switched(Role.PRIMARY)
    assert d.announce and d.active == Role.PRIMARY


def test_path_verdicts_are_events_and_decisions():
    g, c = make()
    g.link_changed(link(2, "ens10nsby"))
    g.link_changed(link(3, "ens11"))
    d = g.path_down(Role.PRIMARY)
    assert d.input == Input.PATH_DOWN and d.active == Role.STANDBY
    assert d.ready == {Role.PRIMARY, Role.STANDBY}   # its link is fine: the loop may fall back to it
    path = [e for e in d.events if e["kind"] == "path"]
    assert [(e["role"], e["slave"], e["up"]) for e in path] == [("primary", "ens11", False)]
    d = g.path_up(Role.PRIMARY)
    assert d.active == Role.PRIMARY
    assert [(e["kind"], e.get("up")) for e in d.events] == [("path", True), ("switch", None)]


def test_reject_and_force_answer_with_decisions():
    g, c = make()
    g.link_changed(link(2, "ens10nsby"))
    g.link_changed(link(3, "ens11"))
    d = g.force(Role.STANDBY)
    assert (d.input, d.active, d.announce) == (Input.FORCE, Role.STANDBY, True)
    d = g.force(None)
    d = g.reject(Role.PRIMARY)
    assert (d.input, d.active, d.ready) == (Input.REJECT, Role.STANDBY, {Role.STANDBY})
    assert g.switches()[-1]["reason"] == "refused"


def test_then_keeps_the_later_state_and_adds_the_rest():
    g, c = make()
    a = g.link_changed(link(2, "ens10nsby"))
    b = g.link_changed(link(3, "ens11"))
    ab = a.then(b)
    assert (ab.state, ab.active, ab.announce) == (State.PRIMARY, Role.PRIMARY, True)
    assert len(ab.actions) == 2 and ab.events == a.events + b.events


def test_random_inputs_only_take_allowed_moves():
    """Whatever happens, each decision is a state of the table reached by an
    allowed move, and its carrier and transmitter are that state's."""
    rnd = random.Random(7)
    for policy in ({}, {"downdelay": 0.2}, {"updelay": 0.3}, {"reselect": "failure"}):
        g, c = make(**policy)
        g.link_changed(link(2, "ens10nsby"))
        before = g.state
        for _ in range(400):
            c.tick(rnd.choice((0, 0.05, 0.2)))
            pick = rnd.randrange(7)
            if pick < 3:
                d = g.link_changed(link(2 + pick % 2, ("ens10nsby", "ens11")[pick % 2],
                                        up=rnd.random() > 0.2, carrier=rnd.random() > 0.4))
            elif pick == 3:
                d = g.link_removed(3)
            elif pick == 4:
                d = g.force(rnd.choice((None, Role.PRIMARY, Role.STANDBY)))
            elif pick == 5:
                role = rnd.choice(list(Role))
                d = g.path_down(role) if rnd.random() < 0.5 else g.path_up(role)
            else:
                d = g.tick()
            assert d.state == before or d.state in TRANSITIONS[before]
            assert d.carrier == CARRIER[d.state] and d.active == TRANSMITS[d.state]
            if d.active is not None:
                assert d.active in d.ready
            before = d.state


def test_event_ring_keeps_the_last_1000_and_answers_since():
    t = [0.0]
    log = EventLog("ens10", clock=lambda: t[0], wall=lambda: 5.0)
    for i in range(RING + 10):
        t[0] = float(i)
        log.record("mtu", mtu=1500 + i)
    assert len(log) == RING and next(iter(log))["mtu"] == 1510
    assert [e["mtu"] for e in log.since(float(RING + 7))] == [1500 + RING + 8, 1500 + RING + 9]
    with pytest.raises(AssertionError):
        log.record("no-such-kind")
