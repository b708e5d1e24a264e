"""How netfo starts its own Python children (the daemon, the lab's stream
tools): in isolated mode and from /, so that a process that often runs as
root imports the installed netfo, never a `netfo/` that lies in the caller's
working directory (-I: no script or working directory on sys.path, no
PYTHON* variables, no user site-packages)."""
from __future__ import annotations

import sys

NEUTRAL_CWD = "/"


def python(module: str, *args: str) -> list:
    """argv running `python -m module args` with this interpreter."""
    return [sys.executable, "-I", "-m", module, *args]


def netfo(*args: str) -> list:
    return python("netfo", *args)
