"""Logging setup for netfo's daemons (`up --foreground`, `auto`).

Under systemd, stderr is a stream to journald ($JOURNAL_STREAM names its
device:inode): each line then starts with its syslog priority, `<3>` error,
`<4>` warning, `<6>` info, `<7>` debug (sd-daemon(3)), and carries no
timestamp of its own (journald stamps it).  Anywhere else (a terminal, the
daemon log file under /run/netfo) the usual `time netfo[IF] LEVEL message`.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Mapping, Optional

PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4,
            logging.INFO: 6, logging.DEBUG: 7}


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (between levels: the next more severe)."""
    for level in sorted(PRIORITY, reverse=True):
        if levelno >= level:
            return PRIORITY[level]
    return 7


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        # One journal entry per line: a traceback's lines keep the priority.
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def to_journal(stream=None, env: Optional[Mapping[str, str]] = None) -> bool:
    """True if stream (stderr) is the journald stream systemd connected."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup(name: str, level: int = logging.INFO, stream=None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if to_journal(stream):
        handler.setFormatter(JournalFormatter("%(message)s"))     # the unit names the master
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s netfo[{name}] %(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
