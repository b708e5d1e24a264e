"""Daemon logging: syslog priority prefixes for journald, the usual format elsewhere."""
import logging
import os
import subprocess
import sys

from netfo import logs


def test_priority():
    assert [logs.priority(l) for l in (logging.CRITICAL, logging.ERROR, logging.WARNING,
                                       logging.INFO, logging.DEBUG)] == [2, 3, 4, 6, 7]
    assert logs.priority(logging.INFO + 5) == 6 and logs.priority(1) == 7


def test_to_journal_only_when_stderr_is_that_stream():
    r, w = os.pipe()
    try:
        with os.fdopen(os.dup(w), "w") as f:
            st = os.fstat(w)
            assert logs.to_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
            assert not logs.to_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
            assert not logs.to_journal(f, {})
            assert not logs.to_journal(f, {"JOURNAL_STREAM": "garbage"})
    finally:
        os.close(r), os.close(w)


SCRIPT = """
import logging, os, sys
st = os.fstat(2)
if sys.argv[1] == "journal":
    os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
from netfo import logs
logs.setup("ens10")
log = logging.getLogger("netfo")
log.error("e"); log.warning("w"); log.info("i"); log.debug("d")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("boom")
"""


def run(mode):
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                          text=True, check=True).stderr.splitlines()


def test_journal_lines_carry_priorities_and_no_timestamp():
    lines = run("journal")
    assert lines[:3] == ["<3>e", "<4>w", "<6>i"]
    assert lines[3] == "<3>boom" and all(l.startswith("<3>") for l in lines[3:])
    assert any("ZeroDivisionError" in l for l in lines)


def test_elsewhere_the_usual_format():
    lines = run("plain")
    assert lines[0].endswith(" netfo[ens10] ERROR e") and lines[0][:4].isdigit()
    assert lines[2].endswith(" netfo[ens10] INFO i")
