"""`netfo status -d`: what /proc/net/bonding shows of an active-backup
bond, in its words (a script that reads those finds them here too), then
netfo's own, from one status reply (server.py)."""
from __future__ import annotations


def _ms(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else "?"


def render(st: dict) -> str:
    """The lines `status -d` adds under the master's status."""
    pol, probe = st.get("policy", {}), st.get("probe") or {}
    slaves = {sl["role"]: sl for sl in st["slaves"]}
    primary = slaves.get("primary")
    active = slaves.get(st["active"]) if st["active"] else None
    targets = probe.get("targets", [])
    arp = [t for t in targets if ":" not in t]
    ns = [t for t in targets if ":" in t]
    lines = [
        "  Bonding Mode: fault-tolerance (active-backup), as net_failover",
        f"  Primary Slave: {primary['name'] if primary else 'None'} "
        f"(primary_reselect {pol.get('reselect', '?')}"
        f"{', pinned by --primary ' + pol['primary'] if pol.get('primary') else ''})",
        f"  Currently Active Slave: {active['name'] if active else 'None'}",
        f"  MII Status: {'up' if st['master']['carrier'] else 'down'}",
        f"  MII Polling Interval (ms): {_ms(pol.get('miimon_ms'))}",
        f"  Up Delay (ms): {_ms(pol.get('updelay_ms'))}",
        f"  Down Delay (ms): {_ms(pol.get('downdelay_ms'))}",
        f"  Peer Notification: {pol.get('notify_count', '?')} x every "
        f"{_ms(pol.get('notify_interval_ms'))} ms",
        f"  ARP Polling Interval (ms): {_ms(probe.get('interval_ms')) if targets else 0}",
        f"  ARP Missed Max: {probe.get('missed', '?')}",
        f"  ARP IP target/s (n.n.n.n form): {','.join(arp)}",
        f"  NS IPv6 target/s (xx::xx form): {','.join(ns)}",
    ]
    for sl in st["slaves"]:
        speed, duplex = sl.get("speed"), sl.get("duplex")
        perm = sl.get("perm_mac")
        lines += [
            "",
            f"  Slave Interface: {sl['name']} ({sl['role']}, index {sl['index']})",
            f"  MII Status: {'up' if sl['ready'] else 'down'} "
            f"(admin {'up' if sl['admin_up'] else 'down'}, "
            f"{'carrier' if sl['carrier'] else 'no carrier'})",
            f"  Speed: {f'{speed} Mbps' if speed else 'Unknown'}",
            f"  Duplex: {duplex or 'unknown'}",
            f"  Link Failure Count: {sl.get('link_failures', '?')}",
            f"  Permanent HW addr: {perm or 'none reported'} (current {st['master']['mac']})",
            f"  MTU: {sl.get('mtu', '?')}",
        ]
        p = sl.get("probe")
        if p:
            lines.append(f"  Probe: path {'up' if p['up'] else 'down'}, "
                         f"{p['misses']} round(s) missed in a row, {p['missed_total']} in all")
    return "\n".join(line.rstrip() for line in lines)
