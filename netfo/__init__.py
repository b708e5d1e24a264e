"""netfo: a userspace net_failover master (TAP + AF_PACKET, Cython fast path).

Only the daemon needs the compiled loop (netfo.daemon imports it and says in
one line when it is missing); the CLI, the lab and the stream tools do not.
"""

__version__ = "0.1.0"

# before anything imports pyroute2: its package __init__ costs more than
# the rest of `netfo up` (lean_pyroute2.py)
from . import lean_pyroute2 as _lean  # noqa: E402

_lean.install()
