"""Dump the links while another thread adds and deletes a veth pair.

Run in a namespace: `python dumpchurn.py COUNT`; prints {"dumps": COUNT,
"interrupted": N, "missing": M}: N plain dumps the kernel flagged
interrupted (NLM_F_DUMP_INTR), M of netfo's links.dump() that lacked a
link that was there all along.  links.dump() raising ends it with a
traceback.
"""
import json
import sys
import threading

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted

from netfo.kernel import links


def main(count: int) -> None:
    with IPRoute() as ipr:
        ipr.link("add", ifname="stay0", kind="veth", peer="stay1")
        stay = ipr.link_lookup(ifname="stay0")[0]
    done = threading.Event()

    def churn() -> None:
        # a link made or deleted changes the table's sequence number (the
        # rename and the TAP of `netfo up` do)
        with IPRoute() as ipr:
            while not done.is_set():
                ipr.link("add", ifname="churn0", kind="veth", peer="churn1")
                ipr.link("del", ifname="churn0")

    t = threading.Thread(target=churn)
    t.start()
    interrupted = missing = 0
    try:
        with IPRoute() as ipr:
            for _ in range(count):
                try:
                    tuple(ipr.link("dump"))
                except NetlinkDumpInterrupted:
                    interrupted += 1
                if stay not in [link.index for link in links.dump(ipr)]:
                    missing += 1
    finally:
        done.set()
        t.join()
    print(json.dumps({"dumps": count, "interrupted": interrupted, "missing": missing}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
