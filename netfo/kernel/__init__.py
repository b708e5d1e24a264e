"""Everything that talks to the kernel: netlink, the TAP, packet sockets,
slave silencing, the master's addresses and groups."""
