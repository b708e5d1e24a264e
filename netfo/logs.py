"""Logging setup for netfo's daemons (`up --foreground`, `auto`).

Under systemd, stderr is a stream to journald ($JOURNAL_STREAM names its
device:inode): each line then starts with its syslog priority, `<3>` error,
`<4>` warning, `<6>` info, `<7>` debug (sd-daemon(3)), and carries no
timestamp of its own (journald stamps it).  Anywhere else (a terminal, the
daemon log file under /run/netfo) the usual `time netfo[IF] LEVEL message`.

Two limits keep a long run from filling /run (a tmpfs): the same warning or
error from the same line of code is logged at most once per
`RateLimit.WINDOW` s, the next one saying how many were suppressed
meanwhile (a probe that fails, an error in the tick: every 10-200 ms); and
a detached daemon's log file is capped at `MAX_BYTES` with one backup
(`PATH.1`), its stdout and stderr following the current file.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from typing import Callable, Mapping, Optional

MAX_BYTES = 4 << 20             # a detached daemon's log, then one backup

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


class RateLimit(logging.Filter):
    """The same message (warning or worse) from the same source line at most
    once per WINDOW s; the next one after a pause says "(N more suppressed)"."""

    WINDOW = 10.0
    MAX_KEYS = 1024

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window, self.clock = window, clock
        self.seen: dict = {}            # key -> [last logged at, suppressed since]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        msg = record.getMessage()
        key = (record.pathname, record.lineno, record.levelno, msg)
        now = self.clock()
        entry = self.seen.get(key)
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            return False
        if entry is not None and entry[1]:
            record.msg, record.args = f"{msg} ({entry[1]} more suppressed)", None
        if len(self.seen) >= self.MAX_KEYS:             # forget the quiet ones
            self.seen = {k: v for k, v in self.seen.items() if now - v[0] < self.window}
        self.seen[key] = [now, 0]
        return True


class CappedLog(logging.handlers.RotatingFileHandler):
    """A detached daemon's log file: max_bytes, then one backup (PATH.1).
    The process's stdout and stderr (where Python writes what logging does
    not: a fatal traceback) follow the current file."""

    def __init__(self, path: str, max_bytes: Optional[int] = None):
        super().__init__(path, maxBytes=max_bytes or MAX_BYTES, backupCount=1)
        self._redirect()

    def doRollover(self) -> None:
        super().doRollover()
        self._redirect()

    def _redirect(self) -> None:
        if self.stream is not None:
            for fd in (1, 2):
                try:
                    os.dup2(self.stream.fileno(), fd)
                except OSError:
                    pass


def setup(name: str, level: int = logging.INFO, stream=None,
          log_file: Optional[str] = None) -> None:
    """log_file: a detached daemon's log (capped, see CappedLog)."""
    stream = stream or sys.stderr
    handler = CappedLog(log_file) if log_file else logging.StreamHandler(stream)
    handler.addFilter(RateLimit())
    if not log_file and to_journal(stream):
        handler.setFormatter(JournalFormatter("%(message)s"))     # the unit names the master
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s netfo[{name}] %(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
