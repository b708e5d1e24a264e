"""Logs that a long run cannot blow up: repeated warnings rate-limited, the
detached daemon's log file capped with one backup."""
import logging
import os
import subprocess
import sys

from netfo import cli, logs


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def records(handler_filter, messages, clock):
    """Log (level, msg, line) tuples; the messages that got through."""
    out = []
    for level, msg, line, dt in messages:
        clock.t += dt
        r = logging.LogRecord("netfo", level, "/x/daemon.py", line, msg, None, None)
        if handler_filter.filter(r):
            out.append(r.getMessage())
    return out


def test_same_warning_from_the_same_line_at_most_once_per_window():
    clock = Clock()
    f = logs.RateLimit(window=10, clock=clock)
    got = records(f, [(logging.WARNING, "probe failed", 7, 0.1)] * 100, clock)    # 10 s
    assert got == ["probe failed"]
    clock.t += 1
    got = records(f, [(logging.WARNING, "probe failed", 7, 0)], clock)
    assert got == ["probe failed (99 more suppressed)"]
    # the count starts again
    clock.t += 11
    assert records(f, [(logging.WARNING, "probe failed", 7, 0)], clock) == ["probe failed"]


def test_other_messages_lines_and_info_are_not_limited():
    clock = Clock()
    f = logs.RateLimit(window=10, clock=clock)
    got = records(f, [(logging.WARNING, "a", 1, 0.01), (logging.WARNING, "b", 1, 0.01),
                      (logging.WARNING, "a", 2, 0.01), (logging.ERROR, "a", 1, 0.01),
                      (logging.INFO, "i", 3, 0.01), (logging.INFO, "i", 3, 0.01),
                      (logging.WARNING, "a", 1, 0.01)], clock)
    assert got == ["a", "b", "a", "a", "i", "i"]


def test_setup_rate_limits_what_the_daemon_logs(tmp_path):
    script = ("import logging, sys\nfrom netfo import logs\nlogs.setup('ens10')\n"
              "log = logging.getLogger('netfo')\n"
              "for i in range(1000):\n    log.warning('tick failed: %s', 'EIO')\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       cwd=tmp_path, env={**os.environ, "JOURNAL_STREAM": ""})
    assert p.stderr.count("tick failed: EIO") == 1, p.stderr


CAPPED = """
import logging, os, sys
from netfo import logs
logs.MAX_BYTES = 4000
logs.setup("ens10", log_file=sys.argv[1])
log = logging.getLogger("netfo")
for i in range(2000):
    log.info("line %05d %s", i, "x" * 40)
print("stdout after rotations", flush=True)
os.write(2, b"stderr after rotations\\n")
"""


def test_detached_log_is_capped_with_one_backup(tmp_path):
    path = tmp_path / "net1-ens10.log"
    with open(path, "a") as f:                  # as _spawn_daemon starts it
        p = subprocess.run([sys.executable, "-c", CAPPED, str(path)], stdout=f, stderr=f)
    assert p.returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["net1-ens10.log", "net1-ens10.log.1"]
    assert os.path.getsize(path) <= 4000 + 200
    assert os.path.getsize(str(path) + ".1") <= 4000 + 200
    text = path.read_text()
    assert "line 01999" in text
    assert "stdout after rotations" in text and "stderr after rotations" in text


def test_spawned_daemon_gets_the_log_path_and_up_points_at_it(monkeypatch, tmp_path, capsys):
    seen = {}

    class Popen:
        def __init__(self, argv, **kw):
            seen["argv"] = argv
            os.write(kw["pass_fds"][0], b"ok\n")

    monkeypatch.setattr(subprocess, "Popen", Popen)     # cli imports it when it spawns
    monkeypatch.setattr(cli.control, "run_path", lambda ifname, suffix: str(tmp_path / f"x.{suffix}"))
    args = cli.parser().parse_args(["up", "ens10"])
    assert cli._spawn_daemon(args, cli.config_of(args)) == 0
    argv = seen["argv"]
    assert argv[argv.index("--log-file") + 1] == str(tmp_path / "x.log")
    assert f"daemon log: {tmp_path / 'x.log'}" in capsys.readouterr().out
    # and the daemon accepts it
    assert cli.parser().parse_args(argv[argv.index("up"):]).log_file == str(tmp_path / "x.log")
