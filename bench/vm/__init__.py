"""A real QEMU guest for netfo and the kernel's net_failover: `python3 -m bench.vm` (see bench/README.md)."""
