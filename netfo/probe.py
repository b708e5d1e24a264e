"""Path probing: is a slave's path alive although its carrier is up?

A VF keeps carrier while the host's PF uplink or vSwitch black-holes it.
Like bonding's arp_interval/arp_validate and teamd's arp_ping, netfo sends
ARP requests (and IPv6 neighbour solicitations) for configured targets out
of the slave that transmits.  A slave's path counts as alive while it
receives ARP/ND frames from a target or from the master's own addresses:
the active slave gets the targets' replies, the other one the probes the
switch floods back to it (bonding's trick), so probing never needs to send
from the backup and never moves the switch's idea of where the MAC is.
"""
from __future__ import annotations

import ipaddress

from .frames import arp_request, neighbour_solicitation, sender

class Prober:
    """Which slaves' paths are alive, from what their observers receive."""

    def __init__(self, targets4: list, targets6: list, interval: float, missed: int):
        self.targets4, self.targets6 = targets4, targets6
        self.interval, self.missed = interval, missed
        self.last_heard: dict = {}          # role -> monotonic time

    @property
    def enabled(self) -> bool:
        return bool(self.targets4 or self.targets6)

    def frames(self, mac: str, state: dict) -> list:
        """One round of probes, sent out of the transmitting slave."""
        src4 = state["ip4"][0] if state["ip4"] else None
        src6 = next((a for a in state["ip6"] if not ipaddress.IPv6Address(a).is_link_local),
                    state.get("link_local6"))
        out = [arp_request(mac, src4, t) for t in self.targets4]
        if src6:
            out += [neighbour_solicitation(mac, src6, t) for t in self.targets6]
        return out

    def heard(self, role, frame: bytes, own: set, now: float) -> None:
        ip = sender(frame)
        if ip is not None and (ip in self.targets4 or ip in self.targets6 or ip in own):
            self.last_heard[role] = now

    def alive(self, role, now: float) -> bool:
        last = self.last_heard.setdefault(role, now)     # a new slave gets a grace period
        return now - last <= self.interval * self.missed
