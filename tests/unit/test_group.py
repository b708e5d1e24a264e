"""The failover state machine, without root: roles, selection, transitions."""
from netfo.group import Enslave, Group, Ignore, Link, Release, Role

MAC = "52:54:00:00:12:53"


def link(index, name, mac=MAC, up=True, carrier=True, **kw):
    return Link(index=index, name=name, mac=mac, up=up, carrier=carrier, **kw)


def group(**kw):
    g = Group("ens10", MAC, standby_index=2, master_index=9, **kw)
    g.link_changed(link(2, "ens10nsby"))
    return g


def test_standby_is_the_named_nic_and_transmits_alone():
    g = group()
    assert g.slaves[Role.STANDBY].name == "ens10nsby"
    assert g.active() == Role.STANDBY and g.carrier


def test_same_mac_device_becomes_primary_and_is_preferred():
    g = group()
    acts = g.link_changed(link(3, "ens11")).actions
    assert [type(a) for a in acts] == [Enslave] and acts[0].role == Role.PRIMARY
    assert g.active() == Role.PRIMARY
    assert g.failovers == 1


def test_permanent_mac_decides_membership_over_current_mac():
    g = group()
    assert g.link_changed(link(3, "ens11", mac="02:00:00:00:00:01", perm_mac=MAC)).actions
    g2 = group()
    assert g2.link_changed(link(3, "ens11", perm_mac="02:00:00:00:00:01")).actions == ()


def test_other_mac_master_tap_and_non_ethernet_are_never_touched():
    g = group()
    assert g.link_changed(link(4, "eth9", mac="02:00:00:00:00:09")).actions == ()
    assert g.link_changed(link(9, "ens10", kind="tun")).actions == ()          # the master itself
    assert g.link_changed(link(5, "tap7", kind="tun")).actions == ()
    assert g.link_changed(link(6, "br0", kind="bridge")).actions == ()
    assert g.link_changed(link(7, "ipip", arptype=768)).actions == ()
    assert Role.PRIMARY not in g.slaves


def test_second_same_mac_device_is_left_alone_once():
    g = group()
    g.link_changed(link(3, "ens11"))
    acts = g.link_changed(link(4, "ens12")).actions
    assert [type(a) for a in acts] == [Ignore]
    assert g.link_changed(link(4, "ens12")).actions == ()     # logged once, not per event
    assert g.slaves[Role.PRIMARY].index == 3


def test_pinned_primary_by_name():
    g = group(pinned_primary="ens12")
    assert g.link_changed(link(3, "ens11")).actions == ()
    assert [a.role for a in g.link_changed(link(4, "ens12")).actions] == [Role.PRIMARY]


def test_tx_selection_follows_admin_and_carrier():
    g = group()
    g.link_changed(link(3, "ens11"))
    g.link_changed(link(3, "ens11", carrier=False))
    assert g.active() == Role.STANDBY
    g.link_changed(link(3, "ens11", up=False, carrier=True))
    assert g.active() == Role.STANDBY      # admin down is not ready either
    g.link_changed(link(2, "ens10nsby", carrier=False))
    assert g.active() is None and not g.carrier
    g.link_changed(link(3, "ens11"))
    assert g.active() == Role.PRIMARY and g.carrier


def test_unplug_then_replug_with_new_index():
    g = group()
    g.link_changed(link(3, "ens11"))
    acts = g.link_removed(3).actions
    assert [(type(a), a.role, a.gone) for a in acts] == [(Release, Role.PRIMARY, True)]
    assert g.active() == Role.STANDBY
    assert g.link_removed(3).actions == ()
    acts = g.link_changed(link(7, "ens11", up=False, carrier=False)).actions
    assert [a.role for a in acts] == [Role.PRIMARY]
    assert g.active() == Role.STANDBY            # new VF still without link
    g.link_changed(link(7, "ens11"))
    assert g.active() == Role.PRIMARY
    assert g.failovers == 3                      # to primary, to standby, back
    assert g.last_failover is not None


def test_rejected_slave_is_not_retried_on_every_event():
    g = group()
    g.link_changed(link(3, "ens11"))
    g.reject(Role.PRIMARY)
    assert Role.PRIMARY not in g.slaves
    assert g.link_changed(link(3, "ens11")).actions == ()     # B-39: stays standalone
    assert Role.PRIMARY not in g.slaves
    g.link_removed(3)
    assert [a.role for a in g.link_changed(link(3, "ens11")).actions] == [Role.PRIMARY]


def test_first_selection_is_no_failover():
    g = Group("ens10", MAC, standby_index=2)
    g.link_changed(link(2, "ens10nsby"))
    assert g.failovers == 0


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def timed_group(**policy):
    from netfo.group import Policy
    clock = Clock()
    g = Group("ens10", MAC, standby_index=2, master_index=9, policy=Policy(**policy), clock=clock)
    g.link_changed(link(2, "ens10nsby"))
    g.link_changed(link(3, "ens11"))
    return g, clock


def test_updelay_holds_a_returning_primary_on_the_standby():
    g, clock = timed_group(updelay=0.5)
    assert g.active() == Role.STANDBY        # a new primary waits too
    clock.t += 0.5
    g.tick()
    assert g.active() == Role.PRIMARY
    g.link_changed(link(3, "ens11", carrier=False))
    assert g.active() == Role.STANDBY
    g.link_changed(link(3, "ens11"))
    assert g.active() == Role.STANDBY and g.next_deadline() == clock.t + 0.5
    clock.t += 0.4
    g.tick()
    assert g.active() == Role.STANDBY
    clock.t += 0.1
    g.tick()
    assert g.active() == Role.PRIMARY
    assert [e["reason"] for e in g.switches()][-1] == "delay"


def test_updelay_is_skipped_when_nothing_else_can_transmit():
    g, clock = timed_group(updelay=5)
    g.link_changed(link(2, "ens10nsby", carrier=False))
    g.link_changed(link(3, "ens11", carrier=False))
    assert g.active() is None
    g.link_changed(link(3, "ens11"))
    assert g.active() == Role.PRIMARY


def test_downdelay_keeps_the_master_carrier_but_never_a_dead_slave():
    g, clock = timed_group(downdelay=0.3)
    g.link_changed(link(2, "ens10nsby", carrier=False))
    g.link_changed(link(3, "ens11", carrier=False))
    assert g.active() is None                 # nothing transmits on a dead slave
    assert g.carrier                          # but the master keeps its carrier
    clock.t += 0.3
    g.tick()
    assert not g.carrier
    g.link_changed(link(3, "ens11"))
    assert g.carrier and g.active() == Role.PRIMARY


def test_reselect_failure_stays_on_the_standby_until_it_fails():
    g, clock = timed_group(reselect="failure")
    g.link_changed(link(3, "ens11", carrier=False))
    g.link_changed(link(3, "ens11"))
    assert g.active() == Role.STANDBY
    g.link_changed(link(2, "ens10nsby", carrier=False))
    assert g.active() == Role.PRIMARY


def test_reselect_better_compares_speed():
    g, clock = timed_group(reselect="better")
    g.link_changed(link(2, "ens10nsby", speed=10000))
    g.link_changed(link(3, "ens11", carrier=False))
    g.link_changed(link(3, "ens11", speed=1000))
    assert g.active() == Role.STANDBY         # the VF is not faster: stay
    g.link_changed(link(3, "ens11", speed=25000))
    assert g.active() == Role.PRIMARY


def test_manual_force_and_release():
    g, clock = timed_group()
    g.force(Role.STANDBY)
    assert g.active() == Role.STANDBY
    g.link_changed(link(2, "ens10nsby", carrier=False))
    assert g.active() == Role.PRIMARY         # forced slave died: fall back
    g.link_changed(link(2, "ens10nsby"))
    assert g.active() == Role.STANDBY
    g.force(None)
    assert g.active() == Role.PRIMARY
    assert [e["reason"] for e in g.switches()][-4:] == ["manual", "carrier", "carrier", "manual"]


def test_broken_path_is_not_used_until_it_heals():
    g, clock = timed_group()
    g.path_down(Role.PRIMARY, "probe")
    assert g.active() == Role.STANDBY
    g.link_changed(link(3, "ens11"))          # carrier alone does not heal it
    assert g.active() == Role.STANDBY
    g.path_up(Role.PRIMARY)
    assert g.active() == Role.PRIMARY
    e = g.switches()[-2]
    assert (e["from"], e["to"], e["slave"], e["reason"]) == ("primary", "standby", "ens10nsby", "probe")


def test_link_failures_count_each_loss_of_a_usable_slave():
    """bonding's Link Failure Count: carrier lost, admin down, path down;
    not a deletion, and a new slave in the role starts from 0."""
    g, clock = timed_group()
    g.settled()
    assert g.link_failures == {Role.STANDBY: 0, Role.PRIMARY: 0}
    g.link_changed(link(3, "ens11", carrier=False))
    g.link_changed(link(3, "ens11", carrier=False))         # still down: no second count
    assert g.link_failures[Role.PRIMARY] == 1
    g.link_changed(link(3, "ens11"))
    g.link_changed(link(3, "ens11", up=False))               # admin down
    g.link_changed(link(3, "ens11"))
    g.path_down(Role.PRIMARY)
    assert g.link_failures == {Role.STANDBY: 0, Role.PRIMARY: 3}
    g.link_removed(3)
    assert Role.PRIMARY not in g.link_failures
    g.link_changed(link(4, "ens11"))                          # the re-plugged VF
    assert g.link_failures[Role.PRIMARY] == 0


def test_a_slave_that_never_was_usable_never_failed():
    g = Group("ens10", MAC, standby_index=2, master_index=9)
    g.link_changed(link(2, "ens10nsby", carrier=False))
    g.link_changed(link(2, "ens10nsby", up=False, carrier=False))
    assert g.link_failures == {Role.STANDBY: 0}


def test_a_switch_the_loop_made_first_is_dated_by_the_loop():
    """The datapath holds a slave on a link event by itself; the switch
    event the group records when it follows carries the loop's time
    (loop_mono), and only then."""
    sending = {"to": Role.STANDBY, "at": 1.0}
    g = group(loop=lambda: (sending["to"], sending["at"]))
    g.link_changed(link(3, "ens11"))
    assert "loop_mono" not in g.switches()[-1]      # the group's own switch: the loop follows it
    sending.update(to=Role.PRIMARY, at=2.0)
    sending.update(to=Role.STANDBY, at=4.25)        # the loop left the VF on its link event
    g.link_removed(3)
    e = g.switches()[-1]
    assert (e["to"], e["reason"], e["loop_mono"]) == ("standby", "deleted", 4.25)


def test_takeover_is_the_primary_only_while_nothing_may_hold_it_back():
    # the datapath takes it the moment its link runs (net_failover's
    # per-frame check); updelay, reselect, a manual standby or a broken path
    # are the group's to weigh
    from netfo.group import Policy
    assert group().takeover() == Role.PRIMARY
    assert group(policy=Policy(updelay=0.2)).takeover() is None
    assert group(policy=Policy(reselect="failure")).takeover() is None
    g = group()
    g.force(Role.STANDBY)
    assert g.takeover() is None
    g.force(Role.PRIMARY)
    assert g.takeover() == Role.PRIMARY
    g.force(None)
    g.path_down(Role.PRIMARY)
    assert g.takeover() is None
