"""netfo: a userspace net_failover master (TAP + AF_PACKET, Cython fast path)."""

# No pure-Python fallback: without the compiled loop netfo must not pretend
# to work, so a missing extension is an ImportError here, at once.
from . import _fastpath  # noqa: F401

__version__ = "0.1.0"
