"""Hold a TAP open, never reading it: the master of the `kernel` path.

The in-kernel path needs a TAP made exactly like netfo's (same features via
TUNSETOFFLOAD, so the guest stack hands it 64 KB GSO frames) and with
carrier, since tc mirred drops frames redirected to a device without
carrier.  A TAP has carrier only while an fd is attached, hence this
process.  Frames never reach the fd: tc redirects them before the driver.

    python3 -m bench.taphold ens10      # prints "ready", exits on SIGTERM
"""
from __future__ import annotations

import signal
import sys

from netfo.kernel import tap


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "ens10"
    # Blocked before "ready", so sigwait() gets the signal, not a default handler.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    fd = tap.open_tap(name)
    tap.set_carrier(fd, True)
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return 0


if __name__ == "__main__":
    sys.exit(main())
