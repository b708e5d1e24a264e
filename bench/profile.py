"""Where netfo's forwarding time goes: `perf record -g` on the daemon.

    python3 -m bench.profile [--mode offload|wire|wire-gro] [--seconds 3]
                             [--paths netfo,python] [--top 12]

For each path (default: netfo and the pure-Python reference), builds the
lab, starts the path, and samples the forwarder's threads (cpu-clock, with
kernel call chains: root) while the lab's own load runs through it: the
64-byte UDP blast and iperf3 TCP, each way.  Every sample is charged to the
outermost system call in its stack (the kernel work done on the loop's
behalf), or to the forwarder's own user code, and the table gives each
one's share with the kernel functions that cost most inside it.  That is
the README's answer to "why not as fast as the in-kernel path": what is
left is system calls, copies and wake-ups, not the loop.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

from netfo.lab import Lab

from . import measure, paths
from .measure import BenchError

# The outermost frame of a sample that names what it is for, first match wins.
SYSCALLS = (
    ("send to the slave (sendmmsg)", ("__sys_sendmmsg", "__x64_sys_sendmmsg")),
    ("send to the slave (send)", ("__x64_sys_sendto", "__sys_sendto", "packet_sendmsg")),
    ("receive from the slave (recvmmsg)", ("__sys_recvmmsg", "__x64_sys_recvmmsg",
                                           "do_recvmmsg")),
    ("receive from the slave (recv)", ("__x64_sys_recvfrom", "__sys_recvfrom",
                                       "packet_recvmsg")),
    ("TAP read", ("__x64_sys_read", "ksys_read", "tun_chr_read_iter")),
    ("TAP write", ("__x64_sys_write", "ksys_write", "tun_chr_write_iter")),
    ("TAP via io_uring", ("__x64_sys_io_uring_enter", "io_uring_enter", "io_submit_sqes",
                          "tctx_task_work", "io_worker_handle_work")),
    ("epoll_wait and wake-ups", ("__x64_sys_epoll_wait", "do_epoll_wait", "schedule",
                                 "__x64_sys_epoll_pwait", "do_sys_poll")),
    ("ioctl (link checks)", ("__x64_sys_ioctl",)),
    ("other system calls", ("entry_SYSCALL_64", "do_syscall_64")),
    ("interrupts and softirqs", ("asm_common_interrupt", "asm_sysvec_apic_timer_interrupt",
                                 "__do_softirq", "handle_softirqs", "irq_exit_rcu")),
)
OWN = "the forwarder's own code (user space)"
# Kernel work inside those system calls, each counted where it is in the stack
INSIDE = (
    ("the receiver's stack (veth peer, bridge, IP, UDP/TCP)", ("__netif_receive_skb_core",
                                                               "__netif_receive_skb_one_core",
                                                               "netif_receive_skb_list_internal",
                                                               "process_backlog")),
    ("copies", ("_copy_to_iter", "_copy_from_iter", "copy_user_generic", "skb_copy_datagram_iter",
                "__check_object_size", "memcpy_orig", "rep_movs_alternative")),
    ("scheduling", ("finish_task_switch.isra.0", "schedule", "__schedule",
                    "try_to_wake_up", "_raw_spin_unlock_irqrestore")),
    ("skb alloc/free", ("kmem_cache_alloc_node_noprof", "__alloc_skb", "kfree_skb_reason",
                        "skb_release_data", "__free_frozen_pages", "alloc_skb_with_frags")),
)


def classify(stack: list[tuple[str, str]]) -> str:
    """stack: [(symbol, dso)] leaf first."""
    for name, frames in SYSCALLS:
        if any(sym in frames for sym, _ in stack):
            return name
    if stack and not stack[0][1].startswith("[kernel"):
        return OWN
    return "other kernel work"


def samples(script: str) -> list[list[tuple[str, str]]]:
    """`perf script` output as stacks of (symbol, dso), leaf first."""
    out, cur = [], None
    for line in script.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur = None
            continue
        if not line.startswith((" ", "\t")):
            cur = []
            continue
        m = re.match(r"\s+[0-9a-f]+\s+(\S+?)(?:\+0x[0-9a-f]+)?\s+\((.*)\)\s*$", line)
        if m is not None and cur is not None:
            cur.append((m.group(1), m.group(2)))
    if cur:
        out.append(cur)
    return out


def profile(pid: int, seconds: float, run) -> list[list[tuple[str, str]]]:
    """Sample pid's threads while run() makes the traffic."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        rec = subprocess.Popen(["perf", "record", "-q", "-g", "-F", "2000", "-p", str(pid),
                                "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            run()
        finally:
            rec.send_signal(2)
            rec.wait(30)
        if rec.returncode not in (0, -2):
            raise BenchError(f"perf record: {rec.stderr.read().decode().strip()[-200:]}")
        p = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym,dso"],
                           capture_output=True, text=True)
        return samples(p.stdout)


def table(stacks: list, top: int) -> str:
    by = collections.Counter(classify(s) for s in stacks)
    leaves: dict = collections.defaultdict(collections.Counter)
    for s in stacks:
        if s:
            leaves[classify(s)][s[0][0]] += 1
    n = max(1, len(stacks))
    lines = [f"{len(stacks):,} samples"]
    for name, k in by.most_common(top):
        hot = ", ".join(f"{sym} {100 * c / n:.0f}%" for sym, c in leaves[name].most_common(3)
                        if 100 * c / n >= 1)
        lines.append(f"  {100 * k / n:5.1f}%  {name}" + (f"  (leaf: {hot})" if hot else ""))
    inside = collections.Counter()
    for s in stacks:
        syms = {sym for sym, _ in s}
        for what, frames in INSIDE:
            if syms.intersection(frames):
                inside[what] += 1
    lines.append("  of all samples, spent in: " + "; ".join(
        f"{what} {100 * inside[what] / n:.0f}%" for what, _ in INSIDE))
    return "\n".join(lines)


def run_path(mode: str, path: str, seconds: float, top: int) -> str:
    lab = Lab(f"nbp{os.getpid() % 10000}", wire_like=mode != "offload",
              vf_gro=mode == "wire-gro", log=lambda *_: None)
    report = [f"== {path}, {mode} mode"]
    try:
        lab.up()
        with paths.PATHS[path](lab) as pid:
            measure.wait_reachable(lab)
            server = measure.start_iperf_server(lab)
            try:
                for what in ("udp64", "tcp"):
                    for d in measure.DIRECTIONS:
                        figures = {}

                        def load():
                            fn = measure.udp64 if what == "udp64" else measure.tcp
                            figures.update(fn(lab, d, seconds))
                        stacks = profile(pid, seconds, load)
                        rate = (f"{figures['delivered_pps'] / 1e3:.0f} kframes/s"
                                if what == "udp64" else f"{figures['gbps']:.2f} Gbit/s")
                        report += [f"-- {'64-byte' if what == 'udp64' else 'TCP'} "
                                   f"{measure.DIRECTION_NAMES[d]}: {rate}", table(stacks, top)]
            finally:
                server.kill()
                server.wait()
    finally:
        lab.down()
    return "\n".join(report)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", default="offload", choices=("offload", "wire", "wire-gro"))
    ap.add_argument("--seconds", type=float, default=3.0, help="per load (default %(default)s)")
    ap.add_argument("--paths", default="netfo,python", help="comma list (default %(default)s)")
    ap.add_argument("--top", type=int, default=12, help="rows per table (default %(default)s)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.profile: needs root (network namespaces, perf with kernel stacks)",
              file=sys.stderr)
        return 1
    for path in args.paths.split(","):
        if path not in paths.PATHS or path in ("direct", "kernel"):
            print(f"bench.profile: no forwarder process to profile in path {path!r}", file=sys.stderr)
            return 1
        try:
            print(run_path(args.mode, path, args.seconds, args.top), flush=True)
        except (BenchError, OSError) as e:
            print(f"bench.profile: {path}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
