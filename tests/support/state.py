"""What `netfo down` must restore: a comparable snapshot of a namespace."""
from __future__ import annotations

import json
import os
import sys

LINK_KEYS = ("ifname", "mtu", "address", "qdisc", "txqlen", "min_mtu", "max_mtu",
             "promiscuity", "allmulti", "group", "link_netnsid")


def snapshot(lab, ns: str = "guest") -> dict:
    def ipj(*args):
        return json.loads(lab.run(ns, "ip", "-j", *args).stdout or "[]")

    links = {}
    for l in ipj("-d", "link", "show"):
        entry = {k: l.get(k) for k in LINK_KEYS}
        entry["flags"] = sorted(l.get("flags", []))
        entry["kind"] = (l.get("linkinfo") or {}).get("info_kind")
        entry["addrgenmode"] = (l.get("inet6_addr_gen_mode"))
        links[l["ifindex"]] = entry
    addrs = {(a["ifname"], i["local"], i["prefixlen"], i.get("scope"), bool(i.get("nodad")))
             for a in ipj("addr", "show") for i in a.get("addr_info", [])}
    routes = set()
    for fam in ("-4", "-6"):
        for r in ipj(fam, "route", "show", "table", "all"):
            r.pop("expires", None)
            routes.add(json.dumps(r, sort_keys=True))
    names = [l["ifname"] for l in links.values()]
    script = ("import os,sys,json;out={}\n"
              "for n in sys.argv[1:]:\n"
              " for v in ('ipv4','ipv6'):\n"
              "  d=f'/proc/sys/net/{v}/conf/{n}'\n"
              "  for k in (os.listdir(d) if os.path.isdir(d) else []):\n"
              "   try: out[f'{v}.{n}.{k}']=open(f'{d}/{k}').read().strip()\n"
              "   except OSError: pass\n"
              "print(json.dumps(out))")
    sysctls = json.loads(lab.run(ns, sys.executable, "-c", script, *names).stdout)
    # stable_secret is unreadable and some values are kernel counters
    sysctls = {k: v for k, v in sysctls.items() if not k.endswith(".stable_secret")}
    nft = lab.run(ns, "nft", "list", "ruleset").stdout
    tc = lab.run(ns, "tc", "qdisc", "show").stdout
    return {"links": links, "addrs": addrs, "routes": routes, "sysctls": sysctls,
            "nft": nft, "tc": tc}


def diff(a: dict, b: dict) -> list:
    out = []
    for key in a:
        if a[key] != b[key]:
            if isinstance(a[key], (set, dict)):
                if isinstance(a[key], set):
                    out.append((key, "only before", a[key] - b[key], "only after", b[key] - a[key]))
                else:
                    ks = set(a[key]) | set(b[key])
                    out.append((key, {k: (a[key].get(k), b[key].get(k)) for k in ks
                                      if a[key].get(k) != b[key].get(k)}))
            else:
                out.append((key, a[key], b[key]))
    return out


def io_uring_rings(pid: int) -> int:
    """How many io_uring instances process pid holds (netfo's --tap-io)."""
    fds = f"/proc/{pid}/fd"
    n = 0
    for fd in os.listdir(fds):
        try:
            n += os.readlink(f"{fds}/{fd}") == "anon_inode:[io_uring]"
        except OSError:
            pass
    return n
