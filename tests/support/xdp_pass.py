"""Attach a minimal XDP_PASS program to a veth (run inside its namespace).

    python xdp_pass.py IFNAME

Why: a veth whose peer runs non-frags XDP gets a max MTU of about one page,
which is how the lab makes a slave refuse a large MTU (a VF capped by its PF,
problem 15 of the behaviour notes) without special hardware.
"""
import ctypes
import struct
import sys

from pyroute2 import IPRoute

SYS_BPF, BPF_PROG_LOAD, BPF_PROG_TYPE_XDP, XDP_PASS = 321, 5, 6, 2


def load_xdp_pass() -> int:
    insns = struct.pack("<BBhi", 0xB7, 0, 0, XDP_PASS) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    buf = ctypes.create_string_buffer(insns)
    lic = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack("<IIQQIIQ", BPF_PROG_TYPE_XDP, 2, ctypes.addressof(buf),
                       ctypes.addressof(lic), 0, 0, 0).ljust(128, b"\0")
    abuf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(SYS_BPF, BPF_PROG_LOAD, abuf, len(attr))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "bpf(BPF_PROG_LOAD)")
    return fd


if __name__ == "__main__":
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=sys.argv[1])[0], xdp_fd=load_xdp_pass())
