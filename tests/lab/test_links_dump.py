"""A link dump the kernel flags interrupted (the table changed under it, as
when `netfo up` renames the NIC and makes the TAP) is read again: netfo auto
died of one, scanning while the master it had started was being built."""
import json
import os
import sys

from netfo.lab.topology import Lab

from support.harness import unique_prefix

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "support", "dumpchurn.py")


def test_a_dump_interrupted_by_a_link_change_is_read_again():
    with Lab(unique_prefix(), log=lambda *_: None) as lab:
        out = lab.run("guest", sys.executable, SCRIPT, "600", timeout=120).stdout
    r = json.loads(out)
    print(r)
    assert r["interrupted"] > 0, f"the churn interrupted no plain dump: this tests nothing: {r}"
    assert r["missing"] == 0, r
