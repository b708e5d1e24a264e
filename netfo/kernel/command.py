"""Running iproute2 and nft, for what pyroute2 does not cover, with one-line errors."""
from __future__ import annotations

import subprocess
from typing import Optional

from ..errors import NetfoError


def run(argv: list, stdin: Optional[str] = None) -> None:
    try:
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise NetfoError(f"{argv[0]} not found: install it (e.g. apt-get install "
                         f"{'nftables' if argv[0] == 'nft' else 'iproute2'})") from None
    if p.returncode != 0:
        raise NetfoError(f"{' '.join(argv)}: {p.stderr.strip()}")
