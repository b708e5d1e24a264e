"""Import pyroute2's IPRoute without the rest of pyroute2.

`import pyroute2` (and so any `pyroute2.x`, whose package is imported
first) runs pyroute2/__init__.py, which imports every API the library has:
NDB with sqlite3, IPDB, the CLI console and its http.server, Ethtool,
WireGuard...  That is 190-450 ms here on a warm page cache, more than the
whole rest of `netfo up`, and many times more where Python starts slowly
(a guest with its root on 9p took 25-37 s to bring netfo up: issue 14).
netfo uses IPRoute and the netlink message classes only.

install() puts a stand-in for the package into sys.modules: submodules
import from its path as usual, `from pyroute2 import IPRoute` gives the
IPRoute class, and any other name runs the real pyroute2/__init__.py in
place (then everything pyroute2 offers is there, as without the
stand-in).  Nothing happens when pyroute2 is imported already or missing.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

# what `from pyroute2 import NAME` may give without the package's __init__
LEAN = {"IPRoute": "pyroute2.iproute.linux"}


def install() -> None:
    if "pyroute2" in sys.modules:
        return
    try:
        spec = importlib.util.find_spec("pyroute2")
    except (ImportError, ValueError):
        return
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return
    pkg = importlib.util.module_from_spec(spec)

    def __getattr__(name: str):
        if name in LEAN:
            value = getattr(importlib.import_module(LEAN[name]), name)
            setattr(pkg, name, value)
            return value
        try:
            found = importlib.util.find_spec(f"pyroute2.{name}")
        except (ImportError, ValueError):
            found = None
        if found is not None:           # a submodule (`from pyroute2 import config`)
            return importlib.import_module(f"pyroute2.{name}")
        del pkg.__dict__["__getattr__"]     # the real package from now on
        spec.loader.exec_module(pkg)
        return getattr(pkg, name)

    pkg.__getattr__ = __getattr__
    sys.modules["pyroute2"] = pkg
