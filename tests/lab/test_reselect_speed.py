"""--reselect better weighs the slaves' speeds: the daemon must read them
(sysfs), or every speed is 0 and a faster primary never wins back."""
import json
import sys

from netfo.lab import VF_IF


PROBE = """
import json, socket, sys
from netfo.config import Config
from netfo.daemon import Daemon
from netfo.group import Link
index = socket.if_nametoindex(sys.argv[1])
out = {}
for reselect in ("better", "always"):
    d = Daemon.__new__(Daemon)
    d.config = Config(reselect=reselect)
    for ready in (True, False):
        link = Link(index, sys.argv[1], "52:54:00:00:12:53", up=ready, carrier=ready)
        out[f"{reselect} {ready}"] = d._measured(link).speed
print(json.dumps(out))
"""


def test_the_daemon_reads_a_ready_slaves_speed_for_reselect_better(lab):
    out = json.loads(lab.run("guest", sys.executable, "-c", PROBE, VF_IF).stdout)
    # a veth reports 10,000 Mbit/s; read only for `better`, only while ready
    assert out == {"better True": 10000, "better False": 0,
                   "always True": 0, "always False": 0}, out
