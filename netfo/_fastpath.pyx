# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The forwarding loop: TAP master <-> AF_PACKET slave sockets.

One loop, woken by epoll, runs with the GIL released and touches no Python
object per frame.  Frames carry a virtio-net header (sizeof(struct
virtio_net_hdr), exported as VNET_HDR_LEN) on both sides (TAP IFF_VNET_HDR,
slave PACKET_VNET_HDR), so a 64 KB GSO segment is one read and one write and
is passed through unchanged.  The C declarations live in includes/*.pxd, the
Datapath's layout in _fastpath.pxd.

The control plane talks to the loop in two ways:
  * set_ready(slot, flag): an atomic store the loop reads per batch - the
    "one cheap call" that moves transmit between slaves;
  * set_slave(slot, fd, ifindex): swaps a slave socket; the old one is
    closed only once every running loop has acknowledged it from between two
    batches, never while one may still be using it (waiting at most
    `timeout` seconds, and not at all when no loop runs).

The loop also reads link events itself (watch_links): a slave that the
kernel reports deleted, down or without carrier is held down at once, in the
loop's own thread, before the control plane has even been scheduled; the
control plane release()s it once it has decided on the slave's fresh state.
Every such hold adds 1 to event_fd(), so the control plane need not poll.
The loop reads the slaves' live carrier itself too (set_miimon), and while
no slave can transmit it takes one whose carrier is back at once, as the
kernel's per-frame check would, then tells event_fd() the same way.

run(), run_tx() and run_rx() return None after stop(), and raise
OSError(errno) when the loop cannot go on (epoll failed, the TAP is gone).
"""

import os

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free, atoi, atoll
from libc.string cimport memcmp, memcpy, memmove, memset
from libc.errno cimport (errno, EAGAIN, EINTR, ENOBUFS, ENETDOWN, ENXIO,
                         ENODEV, EINVAL, EIO, EBADFD, ETIMEDOUT, ENOSYS, EOPNOTSUPP)

from .includes cimport linux, system
from .includes.system cimport (
    read, pread, write, close, recv, recvmmsg, sendmmsg, cmsghdr, CMSG_FIRSTHDR,
    CMSG_NXTHDR, CMSG_DATA, MSG_DONTWAIT, MSG_TRUNC, epoll_event, epoll_create1,
    epoll_ctl, epoll_wait, EPOLLIN, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CLOEXEC,
    pollfd, poll, POLLIN, POLLOUT, ioctl, eventfd, EFD_NONBLOCK, EFD_CLOEXEC, ifreq,
    IFF_UP, IFF_RUNNING, timespec, clock_gettime, CLOCK_MONOTONIC, htons, open,
    O_RDONLY, O_CLOEXEC, itimerspec, timerfd_create, timerfd_settime, TFD_NONBLOCK,
    TFD_CLOEXEC)
from .includes.linux cimport (
    nlmsghdr, ifinfomsg, NLMSG_HDRLEN, RTM_NEWLINK, RTM_DELLINK, SIOCGIFNAME,
    SIOCGIFFLAGS, sockaddr_ll, tpacket_auxdata, virtio_net_hdr)
from . cimport gro
from .gro cimport gro_frame
from .includes.tapring cimport (
    tr_zero, tr_probe, tr_init_reader, tr_init_writer, tr_free, tr_fd, tr_arm,
    tr_reap, tr_release, tr_cancel, tr_wait, tr_write, tr_flush)
from .includes.atomics cimport (
    load_int, store_int, load_int_sc, store_int_sc, add_int, load_u64,
    store_u64, add_u64, cas_u64)


cdef inline uint64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


# Slots: the roles a slave can hold.
PRIMARY = 0
STANDBY = 1
# Receive policies (see README: "rx policy").
RX_ACTIVE = C_RX_ACTIVE  # deliver only from the slave that transmits (bonding)
RX_KERNEL = C_RX_KERNEL  # net_failover: standby RX dropped while a primary exists
RX_ALL = C_RX_ALL        # deliver from both slaves

# The values the loop was compiled with, from the C headers.  The Python
# single sources (netfo/kernel/packet.py, netfo/kernel/tap.py) must agree:
# tests/unit/test_fastpath_constants.py.
BATCH = C_BATCH                         # frames per read/send batch
BUFSZ = C_BUFSZ                         # bytes per frame buffer (vnet header included)
VNET_HDR_LEN = linux.VNET_HDR_LEN       # sizeof(struct virtio_net_hdr)
SOL_PACKET = system.SOL_PACKET
ETH_P_ALL = linux.ETH_P_ALL
PACKET_ADD_MEMBERSHIP = linux.PACKET_ADD_MEMBERSHIP
PACKET_DROP_MEMBERSHIP = linux.PACKET_DROP_MEMBERSHIP
PACKET_AUXDATA = linux.PACKET_AUXDATA
PACKET_VNET_HDR = linux.PACKET_VNET_HDR
PACKET_IGNORE_OUTGOING = linux.PACKET_IGNORE_OUTGOING
PACKET_MR_MULTICAST = linux.PACKET_MR_MULTICAST
PACKET_MR_PROMISC = linux.PACKET_MR_PROMISC
PACKET_MR_ALLMULTI = linux.PACKET_MR_ALLMULTI
TUNSETIFF = linux.TUNSETIFF
TUNSETPERSIST = linux.TUNSETPERSIST
TUNSETOFFLOAD = linux.TUNSETOFFLOAD
TUNSETVNETHDRSZ = linux.TUNSETVNETHDRSZ
TUNSETCARRIER = linux.TUNSETCARRIER
IFF_TAP = linux.IFF_TAP
IFF_NO_PI = linux.IFF_NO_PI
IFF_VNET_HDR = linux.IFF_VNET_HDR
IFF_NO_CARRIER = linux.IFF_NO_CARRIER
TUN_F_CSUM = linux.TUN_F_CSUM
TUN_F_TSO4 = linux.TUN_F_TSO4
TUN_F_TSO6 = linux.TUN_F_TSO6
TUN_F_TSO_ECN = linux.TUN_F_TSO_ECN
# How the loop reads and writes the TAP (--tap-io).
TAP_IO_SYSCALLS = C_TAP_IO_SYSCALLS     # read()/write() per frame
TAP_IO_URING = C_TAP_IO_URING           # io_uring: multishot reads, batched writes
TAP_IO_URING_WRITE = C_TAP_IO_URING_WRITE   # io_uring for the writes only
TAP_IO_AUTO = C_TAP_IO_AUTO             # what measured faster where the kernel allows


def uring_problem():
    """None if --tap-io uring can work here, else why not (one line)."""
    cdef int err = tr_probe()
    if err == 0:
        return None
    if err == ENOSYS:
        return "this kernel has no io_uring (or kernel.io_uring_disabled is set)"
    if err == EOPNOTSUPP:
        return "this kernel has no multishot reads (IORING_OP_READ_MULTISHOT: Linux 6.7)"
    return "io_uring: " + os.strerror(err)


cdef class Datapath:
    """Forwarding state for one failover master.

    threads=1: run() serves both directions in one loop.  threads=2:
    run_tx() (master -> slave) and run_rx() (slaves -> master) each run in a
    thread of their own, so a burst one way never waits behind the other.

    tap_io: TAP_IO_SYSCALLS (read()/write() per frame), TAP_IO_URING
    (io_uring; OSError if this kernel cannot) or TAP_IO_AUTO (io_uring if
    it can; tap_io() says which was chosen).
    """

    def __cinit__(self, int tap_fd, int rx_policy=RX_ACTIVE, int threads=1,
                  int tap_io=C_TAP_IO_SYSCALLS):
        cdef int i, err, mode
        # Every fd -1 before anything can fail: __dealloc__ runs anyway.
        tr_zero(&self.rd)
        tr_zero(&self.wr)
        self.tap_fd = tap_fd
        self.takeover = -1
        self.ep_tx = self.ep_rx = self.cmd_tx = self.cmd_rx = self.ack_fd = self.ev_fd = -1
        self.nl_fd = self.tm_fd = -1
        self.carrier_fd[0] = self.carrier_fd[1] = -1
        self.oper_fd[0] = self.oper_fd[1] = -1
        self.fds[0] = self.fds[1] = -1
        self.rx_watched[0] = self.rx_watched[1] = -1
        for i in range(NDEFER):
            self.deferred[i] = -1
        if threads not in (1, 2):
            raise ValueError("threads must be 1 or 2")
        self.threads = threads
        self.last_act = self.prev_act = -1
        self.resend = 1
        self.txbuf = <char *>malloc(C_BATCH * C_BUFSZ)
        self.rxbuf = <char *>malloc(C_BATCH * (C_BUFSZ + VLAN_HLEN))
        if self.txbuf == NULL or self.rxbuf == NULL:
            raise MemoryError()
        for i in range(C_BATCH):
            self.txiov[i].iov_base = self.txbuf + i * C_BUFSZ
            self.txmsg[i].msg_hdr.msg_iov = &self.txiov[i]
            self.txmsg[i].msg_hdr.msg_iovlen = 1
            self.rxiov[i].iov_base = self.rxbuf + i * (C_BUFSZ + VLAN_HLEN) + VLAN_HLEN
            self.rxiov[i].iov_len = C_BUFSZ
            self.rxmsg[i].msg_hdr.msg_iov = &self.rxiov[i]
            self.rxmsg[i].msg_hdr.msg_iovlen = 1
            self.rxmsg[i].msg_hdr.msg_name = &self.rxaddr[i]
            self.rxmsg[i].msg_hdr.msg_control = self.rxcmsg[i]
        self.set_rx_policy(rx_policy)
        if tap_io not in (C_TAP_IO_SYSCALLS, C_TAP_IO_URING, C_TAP_IO_AUTO,
                          C_TAP_IO_URING_WRITE):
            raise ValueError("unknown tap_io %d" % tap_io)
        mode = C_TAP_IO_AUTO_IS if tap_io == C_TAP_IO_AUTO else tap_io
        if mode != C_TAP_IO_SYSCALLS:
            err = tr_probe()
            if not err and mode == C_TAP_IO_URING:
                err = tr_init_reader(&self.rd, tap_fd, C_BUFSZ)
            if not err:
                err = tr_init_writer(&self.wr, tap_fd, C_BATCH)
            if err:
                tr_free(&self.rd)
                tr_free(&self.wr)
                if tap_io != C_TAP_IO_AUTO:
                    raise OSError(err, "--tap-io %s: %s" % (
                        "uring" if tap_io == C_TAP_IO_URING else "uring-write",
                        uring_problem() or os.strerror(err)))
                self.uring_err = err
            else:
                self.uring = mode == C_TAP_IO_URING
                self.uring_wr = 1
        self.ep_tx = epoll_create1(EPOLL_CLOEXEC)
        self.ep_rx = self.ep_tx if threads == 1 else epoll_create1(EPOLL_CLOEXEC)
        self.cmd_tx = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        self.cmd_rx = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        self.ack_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        self.ev_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if min(self.ep_tx, self.ep_rx, self.cmd_tx, self.cmd_rx, self.ack_fd, self.ev_fd) < 0:
            raise OSError(errno, "datapath: epoll/eventfd setup failed")
        self._watch(self.ep_tx, tap_fd, TAG_TAP)
        if self.uring:
            # epoll stays the loop's one wait. The ring's fd is readable
            # while completions wait (no eventfd to read and reset): frames
            # read as task work at the exit of any other system call. The
            # TAP's own fd stays watched too: a frame that wakes a sleeping
            # loop is then read as the epoll_wait that reports it returns,
            # instead of that wait ending in EINTR and a second one
            # reporting the ring.
            self._watch(self.ep_tx, tr_fd(&self.rd), TAG_TAP)
        self._watch(self.ep_tx, self.cmd_tx, TAG_CMD_TX)
        self._watch(self.ep_rx, self.cmd_rx, TAG_CMD_RX)

    def __dealloc__(self):
        # No loop runs: a running one holds a reference to self.
        cdef int i
        for i in range(2):
            if self.fds[i] >= 0:
                close(self.fds[i])
        self._close_deferred()
        if self.ep_rx != self.ep_tx and self.ep_rx >= 0:
            close(self.ep_rx)
        for i in (self.nl_fd, self.tm_fd, self.carrier_fd[0], self.carrier_fd[1], self.oper_fd[0], self.oper_fd[1], self.ep_tx, self.cmd_tx, self.cmd_rx, self.ack_fd, self.ev_fd):
            if i >= 0:
                close(i)
        tr_free(&self.rd)
        tr_free(&self.wr)
        free(self.txbuf)
        free(self.rxbuf)

    cdef int _watch(self, int ep, int fd, uint32_t tag) except -1:
        cdef epoll_event ev
        ev.events = EPOLLIN
        ev.data.u32 = tag
        if epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0:
            raise OSError(errno, "datapath: epoll_ctl failed")
        return 0

    cdef void _close_deferred(self) noexcept:
        cdef int i
        for i in range(NDEFER):
            if self.deferred[i] >= 0:
                close(self.deferred[i])
                self.deferred[i] = -1

    # ---- control-plane API (called with the GIL, from another thread) ----

    def set_rx_policy(self, int policy):
        if policy not in (RX_ACTIVE, RX_KERNEL, RX_ALL):
            raise ValueError("unknown rx policy %d" % policy)
        store_int(&self.rx_policy, policy)

    def set_busy_poll(self, unsigned int usec):
        """Poll for usec after the last frame before sleeping (0: never)."""
        store_u64(&self.busy_poll_ns, <uint64_t>usec * 1000)

    def set_gro(self, bint on):
        """Coalesce the TCP segments of a flow in each slave batch into one
        GSO frame before writing it to the master (netfo/gro.pxd)."""
        store_int(&self.gro, on)

    def set_promisc(self, bint on):
        """Deliver unicast for other hosts too (the master is promiscuous)."""
        store_int(&self.promisc, on)

    def set_carrier(self, bint on):
        """Set the master's carrier.  The loop turns it back on itself when
        it takes a slave while it is off (_take); only then, as
        TUNSETCARRIER waits for the RTNL lock, which a slave's unplug holds
        for tens of ms."""
        cdef int carrier = on
        with nogil:
            if ioctl(self.tap_fd, linux.TUNSETCARRIER, &carrier) < 0:
                with gil:
                    raise OSError(errno, "TUNSETCARRIER")
            store_int_sc(&self.carrier_off, not on)

    def set_takeover(self, int slot):
        """Make slot ready and preferred by itself as soon as its link runs
        (a link event or a miimon tick), without waiting for the control
        plane, as net_failover's per-frame check takes a primary with
        carrier (-1: never).  The control plane's standing choice while
        nothing may delay the primary (reselect always, no updelay, no
        manual choice): a re-plugged VF then carries the traffic from its
        carrier on.  Counted in link_recoveries, told through event_fd()."""
        store_int(&self.takeover, -1 if slot < 0 else slot & 1)

    def set_ready(self, int slot, bint ready):
        """Tell the loops whether a slave may transmit (admin up and carrier).
        While the loop holds the slave down, it stays not ready."""
        cdef int s = slot & 1
        cdef int r = ready and not load_int_sc(&self.held[s])
        store_int_sc(&self.ready[s], r)
        if r and load_int_sc(&self.held[s]):
            store_int_sc(&self.ready[s], 0)     # the loop held it meanwhile
        self._note_active()

    def release(self, int slot):
        """End the loop's hold on slot: call before reading the slave's state
        afresh, then set_ready() from what was read."""
        store_int_sc(&self.held[slot & 1], 0)

    def watch_links(self, int fd):
        """Read link events from fd (a netlink socket bound to RTMGRP_LINK,
        non-blocking; the datapath owns it from now on)."""
        if self.nl_fd >= 0:
            raise RuntimeError("already watching links")
        self.nl_fd = fd
        self._watch(self.ep_tx, fd, TAG_NETLINK)

    def set_miimon(self, unsigned int ms):
        """Read each slave's live carrier every ms (0: never) in the loop's
        own thread: hold a ready slave that lost it, and take one that has
        it back while none can transmit (link_holds, link_recoveries; both
        add 1 to event_fd()).  The kernel announces a carrier loss up to a
        second late (linkwatch); the driver's bit, in sysfs, is live."""
        cdef itimerspec its
        if self.tm_fd < 0:
            self.tm_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
            if self.tm_fd < 0:
                raise OSError(errno, "datapath: timerfd_create failed")
            self._watch(self.ep_tx, self.tm_fd, TAG_CARRIER)
        its.it_interval.tv_sec = ms // 1000
        its.it_interval.tv_nsec = (ms % 1000) * 1000000
        its.it_value = its.it_interval
        if timerfd_settime(self.tm_fd, 0, &its, NULL) < 0:
            raise OSError(errno, "datapath: timerfd_settime failed")

    def set_resend(self, bint on):
        """On a send that fails because the slave is gone or down, switch and
        resend (default), or drop the frame (net_failover's behaviour)."""
        store_int(&self.resend, on)

    def set_preferred(self, int slot):
        """Transmit via slot while it is ready, else via the other one.

        The control plane's choice (updelay, reselect, manual) goes here;
        readiness stays separate so that a send error can still fall over
        to the other slave at once.
        """
        store_int(&self.preferred, slot & 1)
        self._note_active()

    def set_slave(self, int slot, int fd, int ifindex=0, double timeout=1.0):
        """Give the loops slave socket fd for slot (-1: no slave), bound to
        link ifindex (whose events the loop watches).

        The datapath owns fd from now on.  The previous socket is closed only
        after every running loop has passed a point between batches (a
        quiescent state), so no loop can still be using it.  With no loop
        running it is closed at once; otherwise this waits (GIL released) at
        most timeout seconds, then raises TimeoutError (an OSError, errno
        ETIMEDOUT): the new socket is in place all the same, and the old one
        stays open until a later set_slave() or the Datapath's end.
        """
        cdef int old
        cdef uint64_t gen, deadline
        cdef bint ok = True
        if slot not in (PRIMARY, STANDBY):
            raise ValueError("slot must be PRIMARY or STANDBY")
        old = load_int(&self.fds[slot])
        memset(&self.slots[slot], 0, sizeof(slot_stats))
        if slot == load_int(&self.prev_act):
            store_u64(&self.prev_until, 0)      # a new socket's frames are no old slave's
        store_int_sc(&self.ready[slot], 0)
        store_int_sc(&self.held[slot], 0)
        store_int(&self.ifindex[slot], ifindex if fd >= 0 else 0)
        store_int(&self.fds[slot], fd)
        self._note_active()
        gen = add_u64(&self.cmd_gen, 1)
        # A loop starts (and leaves its nogil part) only with the GIL, which
        # we hold: with no RX loop running, ep_rx is ours to update.
        if not load_int(&self.loops[LOOP_RX]):
            self._sync_rx_watch()
        if load_int(&self.loops[LOOP_TX]) or load_int(&self.loops[LOOP_RX]):
            deadline = monotonic_ns() + <uint64_t>(max(timeout, 0.0) * 1e9)
            self._kick()
            with nogil:
                ok = self._await_acks(gen, deadline)
            if not load_int(&self.loops[LOOP_RX]):
                self._sync_rx_watch()           # an RX loop left before syncing
        if not ok:
            self._defer(old)
            raise TimeoutError(ETIMEDOUT, "datapath: set_slave: the loops did not pass "
                               "a quiescent point within %g s" % timeout)
        self._close_deferred()
        if old >= 0:
            close(old)

    cdef void _defer(self, int fd) noexcept:
        cdef int i
        if fd < 0:
            return
        for i in range(NDEFER):
            if self.deferred[i] < 0:
                self.deferred[i] = fd
                return
        # NDEFER timeouts in a row: the loops are stuck; leak rather than
        # close a socket a loop may use.

    def active(self):
        """Slot that transmits now (PRIMARY, STANDBY) or -1 (B-19)."""
        return self._active()

    def switched_at(self):
        """When active() last changed (monotonic s, time.monotonic()'s
        clock; 0.0: never): a switch the loop made before the control plane
        followed it is dated by this."""
        return load_u64(&self.switched_ns) / 1e9

    def fd(self, int slot):
        """The slave socket of slot, or -1: for setsockopt, never to close."""
        return load_int(&self.fds[slot & 1])

    def event_fd(self):
        """An eventfd (EFD_NONBLOCK|EFD_CLOEXEC; the datapath's own, closed
        with it: never close it) to which the loop adds 1 whenever it holds
        a slave down by itself: a link event, a carrier read, a slave found
        not running at a send batch (all counted in link_holds), a failed
        send that fell over to the other slave (send_failovers); or when it
        took a slave whose carrier came back while none could transmit
        (link_recoveries).  It is readable while its count
        is non-zero; reading 8 bytes returns the count and resets it.  Then
        release() and set_ready() as after any change."""
        return self.ev_fd

    def ping(self, double timeout=1.0):
        """Liveness probe (the service watchdog): post a no-op through the
        loops' command eventfds, the way set_slave() does, and wait until
        every loop has passed it between two batches.  True if the loops
        this datapath needs all run (run(), or both run_tx() and run_rx())
        and each answered within timeout s; False if one is not running or
        is wedged (e.g. blocked in a write).  Any thread; nothing changes
        for the loops, whose per-frame path is untouched (only a wake-up)."""
        cdef uint64_t gen, deadline
        cdef int ok
        if not (load_int(&self.loops[LOOP_TX]) and load_int(&self.loops[LOOP_RX])):
            return False
        gen = add_u64(&self.cmd_gen, 1)
        deadline = monotonic_ns() + <uint64_t>(max(timeout, 0.0) * 1e9)
        self._kick()
        with nogil:
            ok = self._await_acks(gen, deadline)
        # _await_acks passes a loop that left meanwhile: it must still run.
        return bool(ok and load_int(&self.loops[LOOP_TX]) and load_int(&self.loops[LOOP_RX]))

    def stop(self):
        """Make the loops return after their current batch."""
        store_int(&self.stopping, 1)
        self._kick()

    def run(self):
        """Both directions in one loop (threads=1).  Returns None after
        stop(); raises OSError(errno, strerror) if the loop cannot go on
        (epoll failed; the TAP is gone: EBADFD once the TAP was deleted)."""
        if self.threads != 1:
            raise RuntimeError("threads=2: call run_tx() and run_rx() in two threads")
        return self._run(self.ep_tx, LOOP_TX, LOOP_RX)

    def run_tx(self):
        """Master -> slave loop (threads=2); returns or raises as run()."""
        return self._run(self.ep_tx, LOOP_TX, LOOP_TX)

    def run_rx(self):
        """Slaves -> master loop (threads=2); returns or raises as run()."""
        return self._run(self.ep_rx, LOOP_RX, LOOP_RX)

    cdef object _run(self, int ep, int first, int last):
        cdef int err, w
        cdef uint64_t one = 1
        for w in range(first, last + 1):
            add_int(&self.loops[w], 1)
        with nogil:
            err = self._uring_arm() if first == LOOP_TX else 0
            if not err:
                err = self._loop(ep)
            if first == LOOP_TX:
                self._uring_disarm()
            # Not running any more, before the GIL is back: a set_slave()
            # waiting for this loop's acknowledgement must not wait for it.
            for w in range(first, last + 1):
                add_int(&self.loops[w], -1)
            write(self.ack_fd, &one, 8)
        if err:
            raise OSError(err, os.strerror(err))
        return None

    def tap_io(self):
        """How the loop reads and writes the TAP: "uring" or "syscalls"."""
        return "uring" if self.uring else "uring-write" if self.uring_wr else "syscalls"

    def uring_error(self):
        """The errno that made TAP_IO_AUTO fall back to syscalls (0: none)."""
        return self.uring_err

    def stats(self):
        """Counters: master totals (monotonic) and per-slot since enslaved."""
        master = dict(self.m)
        slots = [dict(self.slots[0]), dict(self.slots[1])]
        return {"master": master, "slots": slots}

    # ---- the loops (GIL released) ----

    cdef void _kick(self) noexcept nogil:
        cdef uint64_t one = 1
        write(self.cmd_tx, &one, 8)
        write(self.cmd_rx, &one, 8)

    cdef int _await_acks(self, uint64_t gen, uint64_t deadline) noexcept nogil:
        """1 once every running loop has passed generation gen, 0 at deadline."""
        cdef pollfd p
        cdef uint64_t v, now, ms
        cdef int w, pending
        while True:
            pending = 0
            for w in range(2):
                if load_int(&self.loops[w]) and <int64_t>(load_u64(&self.acked[w]) - gen) < 0:
                    pending = 1
            if not pending:
                return 1
            now = monotonic_ns()
            if now >= deadline:
                return 0
            # Short slices: another waiter may have read the ack counter.
            ms = (deadline - now + 999999) // 1000000
            p.fd = self.ack_fd
            p.events = POLLIN
            p.revents = 0
            if poll(&p, 1, 10 if ms > 10 else <int>ms) > 0:
                read(self.ack_fd, &v, 8)

    cdef void _ack(self, int which, int cmd_fd) noexcept nogil:
        """This loop is between batches: it holds no slave fd any more."""
        cdef uint64_t v = 1
        read(cmd_fd, &v, 8)
        store_u64(&self.acked[which], load_u64(&self.cmd_gen))
        v = 1
        write(self.ack_fd, &v, 8)

    cdef inline int _active(self) noexcept nogil:
        cdef int p = load_int(&self.preferred)
        cdef int q = 1 - p
        if load_int(&self.fds[p]) >= 0 and load_int(&self.ready[p]):
            return p
        if load_int(&self.fds[q]) >= 0 and load_int(&self.ready[q]):
            return q
        return -1

    cdef void _note_active(self) noexcept nogil:
        """Called wherever the transmitting slot may change: remember the old one."""
        cdef int a = self._active()
        cdef int last = load_int(&self.last_act)
        cdef uint64_t now
        if a != last:
            now = monotonic_ns()
            store_int(&self.prev_act, last)
            store_u64(&self.prev_until, now + RX_GRACE_NS)
            store_u64(&self.switched_ns, now)
            store_int(&self.last_act, a)

    cdef inline bint _grace(self, int s) noexcept nogil:
        return s == load_int(&self.prev_act) and monotonic_ns() < load_u64(&self.prev_until)

    cdef void _sync_rx_watch(self) noexcept nogil:
        """Make ep_rx watch exactly the current slave fds."""
        cdef int slot, fd
        cdef epoll_event ev
        for slot in range(2):
            fd = load_int(&self.fds[slot])
            if fd == self.rx_watched[slot]:
                continue
            if self.rx_watched[slot] >= 0:
                epoll_ctl(self.ep_rx, EPOLL_CTL_DEL, self.rx_watched[slot], &ev)
            if fd >= 0:
                ev.events = EPOLLIN
                ev.data.u32 = TAG_SLOT0 + slot
                epoll_ctl(self.ep_rx, EPOLL_CTL_ADD, fd, &ev)
            self.rx_watched[slot] = fd

    cdef int _loop(self, int ep) noexcept nogil:
        """Forward until stop() (returns 0) or an error the loop cannot go on
        after (returns its errno)."""
        cdef epoll_event evs[4]
        cdef int n, i, err
        cdef uint32_t tag
        cdef uint64_t idle_since = 0, now
        while not load_int(&self.stopping):
            # Busy polling: keep looking for busy_poll_ns after the last
            # frame before sleeping, so a reply that comes back within that
            # time is not delayed by a wake-up (tens of us on a VM).
            n = epoll_wait(ep, evs, 4, 0 if idle_since else -1)
            if n == 0:
                now = monotonic_ns()
                if now - idle_since > load_u64(&self.busy_poll_ns):
                    idle_since = 0
                continue
            if n < 0:
                if errno == EINTR:
                    continue
                return errno
            if load_u64(&self.busy_poll_ns):
                idle_since = monotonic_ns()
            for i in range(n):
                tag = evs[i].data.u32
                err = 0
                if tag == TAG_TAP:
                    err = self._pump_tap()
                elif tag == TAG_CMD_TX:
                    self._ack(LOOP_TX, self.cmd_tx)
                elif tag == TAG_CMD_RX:
                    self._sync_rx_watch()
                    self._ack(LOOP_RX, self.cmd_rx)
                elif tag == TAG_NETLINK:
                    self._pump_links()
                elif tag == TAG_CARRIER:
                    self._pump_carrier()
                else:
                    err = self._pump_slave(tag - TAG_SLOT0)
                if err:
                    return err
        return 0

    cdef void _pump_links(self) noexcept nogil:
        """Hold down a ready slave the kernel reports deleted, down or
        without carrier. A "down" message may be older than the link's
        present state (queued before netfo brought the link up), so the
        link's flags are read again: IFF_RUNNING is its operstate, which the
        kernel updates before it sends the message (linkwatch)."""
        cdef char buf[NLBUFSZ]
        cdef ssize_t n
        cdef size_t pos
        cdef nlmsghdr *h
        cdef ifinfomsg *ifi
        cdef int s
        while True:
            n = recv(self.nl_fd, buf, NLBUFSZ, MSG_DONTWAIT)
            if n <= 0:
                return
            pos = 0
            while pos + sizeof(nlmsghdr) <= <size_t>n:
                h = <nlmsghdr *>(buf + pos)
                if h.nlmsg_len < sizeof(nlmsghdr) or pos + h.nlmsg_len > <size_t>n:
                    break
                if (h.nlmsg_type == RTM_NEWLINK or h.nlmsg_type == RTM_DELLINK) and \
                        h.nlmsg_len >= NLMSG_HDRLEN + sizeof(ifinfomsg):
                    ifi = <ifinfomsg *>(buf + pos + NLMSG_HDRLEN)
                    for s in range(2):
                        if ifi.ifi_index == load_int(&self.ifindex[s]) and \
                                load_int(&self.ready[s]) and (
                                h.nlmsg_type == RTM_DELLINK or
                                not (ifi.ifi_flags & IFF_UP and ifi.ifi_flags & IFF_RUNNING)) \
                                and not self._link_ok(s):
                            self._hold(s, &self.m.link_holds)
                pos += (h.nlmsg_len + 3) & ~3
            self._take_over()
            self._recover()

    cdef int _name(self, int s, bint again) noexcept nogil:
        """Put slot s's link name in ifname[s]: the cached one, unless again
        (a rename) or it is another link's; 0, or -1 if the link is gone."""
        cdef ifreq ifr
        cdef char buf[16]
        cdef ssize_t n
        cdef int fd
        cdef int index = load_int(&self.ifindex[s])
        if self.name_of[s] == index and not again:
            return 0
        memset(&ifr, 0, sizeof(ifr))
        ifr.ifr_ifindex = index
        if ioctl(load_int(&self.fds[s]), SIOCGIFNAME, &ifr) < 0:
            return -1
        memcpy(self.ifname[s], ifr.ifr_name, 16)
        self.name_of[s] = index
        # the link's carrier-loss counter, if the sysfs mounted here is its
        # network namespace's (the one that mounted it)
        if self.carrier_fd[s] >= 0:
            close(self.carrier_fd[s])
        self.carrier_fd[s] = self._sysfs(s, b"carrier_down_count")
        fd = self._sysfs(s, b"ifindex")
        n = read(fd, buf, sizeof(buf) - 1) if fd >= 0 else -1
        buf[max(n, 0)] = 0
        if fd >= 0:
            close(fd)
        if self.carrier_fd[s] >= 0 and (n <= 0 or atoi(buf) != index):
            close(self.carrier_fd[s])
            self.carrier_fd[s] = -1
        if self.oper_fd[s] >= 0:
            close(self.oper_fd[s])
        self.oper_fd[s] = self._sysfs(s, b"operstate") if self.carrier_fd[s] >= 0 else -1
        self.downs[s] = self._downs(s)
        return 0

    cdef int _link_ok(self, int s) noexcept nogil:
        """Slot s's link, as it is now: up and running (0 if gone). One
        ioctl by the cached name; the name is looked up again if it fails."""
        cdef ifreq ifr
        cdef int attempt
        cdef int fd = load_int(&self.fds[s])
        if fd < 0:
            return 0
        if load_int(&self.ifindex[s]) == 0:
            return 1                    # set_slave() was not told which link
        for attempt in range(2):
            if self._name(s, attempt == 1) < 0:
                return 0
            memset(&ifr, 0, sizeof(ifr))
            memcpy(ifr.ifr_name, self.ifname[s], 16)
            if ioctl(fd, SIOCGIFFLAGS, &ifr) == 0:
                return (ifr.ifr_flags & IFF_UP) != 0 and (ifr.ifr_flags & IFF_RUNNING) != 0
        return 0

    cdef int _sysfs(self, int s, const char *attr) noexcept nogil:
        """Open /sys/class/net/<ifname[s]>/<attr> (-1 if it cannot)."""
        cdef char path[64]
        cdef int k = 15
        memcpy(path, b"/sys/class/net/", 15)
        while k - 15 < 15 and self.ifname[s][k - 15]:
            path[k] = self.ifname[s][k - 15]
            k += 1
        path[k] = b'/'
        k += 1
        while attr[0] and k < 63:
            path[k] = attr[0]
            attr += 1
            k += 1
        path[k] = 0
        return open(path, O_RDONLY | O_CLOEXEC)

    cdef int64_t _downs(self, int s) noexcept nogil:
        """How often slot s's link lost its carrier (-1: not known)."""
        cdef char buf[24]
        cdef ssize_t n
        if self.carrier_fd[s] < 0:
            return -1
        n = pread(self.carrier_fd[s], buf, sizeof(buf) - 1, 0)
        if n <= 0:
            return -1
        buf[n] = 0
        return atoll(buf)

    cdef int _lost_carrier(self, int s) noexcept nogil:
        """Whether slot s's link lost its carrier since the last look: 1, 0,
        -1 (not known: no link given, or this mount's sysfs shows another
        network namespace's links).  The driver's carrier bit is what
        net_failover reads per frame; netlink and IFF_RUNNING report a loss
        only when linkwatch runs, up to a second later.  Its sysfs file
        takes the RTNL lock (a netns move held the loop 19 ms), the
        counter of losses beside it does not: a read through a file kept
        open, which a rename keeps."""
        cdef int64_t d
        if load_int(&self.fds[s]) < 0 or load_int(&self.ifindex[s]) == 0:
            return -1
        if self._name(s, False) < 0:
            return 1                    # gone
        d = self._downs(s)
        if d < 0:
            return -1
        if d == self.downs[s]:
            return 0
        self.downs[s] = d
        return 1

    cdef void _pump_carrier(self) noexcept nogil:
        """miimon (set_miimon): hold a ready slave that lost its carrier,
        then take one that has it back if none can transmit."""
        cdef uint64_t ticks
        cdef int s
        read(self.tm_fd, &ticks, 8)
        for s in range(2):
            if self._lost_carrier(s) == 1 and load_int(&self.ready[s]):
                self._hold(s, &self.m.link_holds)
        self._take_over()
        self._recover()

    cdef int _recover(self) noexcept nogil:
        """While no slave can transmit, take one that runs again (the
        preferred first) at once, as net_failover's per-frame carrier check
        would, instead of waiting for the control plane: its hold ends, the
        master's carrier is turned on, and the control plane follows
        through event_fd().  The group does the same (updelay yields when
        nothing else can transmit).  1 if one was taken."""
        cdef int p, s, i
        if self._active() >= 0:
            return 0
        p = load_int(&self.preferred)
        for i in range(2):
            s = p if i == 0 else 1 - p
            if self._runs_again(s):
                self._take(s)
                return 1
        return 0

    cdef void _take_over(self) noexcept nogil:
        """set_takeover()'s slot, once its link runs: ready and preferred."""
        cdef int t = load_int(&self.takeover)
        if t >= 0 and not load_int(&self.ready[t]) and self._runs_again(t):
            store_int(&self.preferred, t)
            self._take(t)

    cdef bint _runs_again(self, int s) noexcept nogil:
        # IFF_RUNNING: a carrier coming back is urgent for linkwatch, which
        # sets it once it has activated the qdisc (that drops frames until
        # then); no loss since the last look, as it is late to report those.
        # IFF_RUNNING also stands for operstate "unknown", which a NIC keeps
        # until linkwatch first looks at it: a re-plugged e1000e, without
        # carrier, for 0.6-0.7 s after it was brought up
        return (load_int(&self.ifindex[s]) and self._link_ok(s) and self._lost_carrier(s) != 1
                and not self._oper_unknown(s))

    cdef bint _oper_unknown(self, int s) noexcept nogil:
        """Slot s's operstate is "unknown" (0 if it cannot be read here)."""
        cdef char buf[8]
        cdef ssize_t n
        if self.oper_fd[s] < 0:
            return 0
        n = pread(self.oper_fd[s], buf, sizeof(buf), 0)
        return n >= 7 and memcmp(buf, b"unknown", 7) == 0

    cdef void _take(self, int s) noexcept nogil:
        """Transmit via s (its hold ends), with the master's carrier on;
        the control plane follows through event_fd()."""
        cdef int on = 1
        cdef uint64_t one = 1
        store_int_sc(&self.held[s], 0)
        store_int_sc(&self.ready[s], 1)
        self._note_active()
        # net_failover turns its master's carrier on in the slave's own link
        # event; the control plane would a Python wake-up later (~0.1 s in a
        # TCG guest), while the guest's stack drops what it sends to a master
        # without carrier
        if load_int_sc(&self.carrier_off):
            store_int_sc(&self.carrier_off, 0)
            ioctl(self.tap_fd, linux.TUNSETCARRIER, &on)
        self.m.link_recoveries += 1
        write(self.ev_fd, &one, 8)

    cdef inline void _hold(self, int s, uint64_t *why) noexcept nogil:
        """Stop transmitting via s until the control plane release()s it;
        count it in why and tell event_fd()."""
        cdef uint64_t one = 1
        store_int_sc(&self.held[s], 1)      # before ready: see set_ready()
        store_int_sc(&self.ready[s], 0)
        self._note_active()
        why[0] += 1
        write(self.ev_fd, &one, 8)

    cdef int _pump_tap(self) noexcept nogil:
        """Read a batch from the master and send it via the active slave.
        Returns 0, or the errno of a read that says the TAP is gone."""
        cdef int n = 0, err, gone = 0
        cdef ssize_t r
        if self.uring:
            return self._pump_tap_uring()
        while n < C_BATCH:
            r = read(self.tap_fd, self.txiov[n].iov_base, C_BUFSZ)
            if r < 0:
                err = errno
                if err == EINTR:
                    continue
                if err == EBADFD or err == ENODEV or err == EIO:
                    # The TAP is gone: tun.c detaches its files when the
                    # device is deleted, and then a read fails with EBADFD
                    # (EIO on old kernels) while poll reports EPOLLERR for
                    # ever. Send what was read, then leave.
                    gone = err
                break
            if r <= VNET:
                self.m.tx_received += 1
                self.m.drop_tap_read += 1
                self.m.tx_dropped += 1
                continue
            self.txiov[n].iov_len = r
            n += 1
        self.m.tx_received += n
        self._send_batch(n)
        return gone

    cdef void _send_batch(self, int n) noexcept nogil:
        """Send txmsg[0:n] via the active slave (falling over, waiting for
        room, or dropping, as below)."""
        cdef int sent = 0, s, k, err, i, waits = 0, fd
        cdef uint64_t nbytes
        while sent < n:
            s = self._active()
            if s < 0 and monotonic_ns() >= self.recover_after:
                self.recover_after = monotonic_ns() + RECOVER_EVERY_NS
                if self._recover():
                    continue
            if s < 0:
                self.m.drop_no_slave += n - sent
                self.m.tx_dropped += n - sent
                return
            if not self._link_ok(s):
                # Closing (unplug, admin down): once the kernel has stopped
                # the device its qdisc is a no-op that drops frames and
                # reports success, until the close ends and sends fail. The
                # kernel driver checks netif_running() per frame; so must we.
                self._hold(s, &self.m.link_holds)
                continue
            fd = load_int(&self.fds[s])
            k = sendmmsg(fd, &self.txmsg[sent], n - sent, 0)
            if k > 0:
                nbytes = 0
                for i in range(sent, sent + k):
                    nbytes += self.txiov[i].iov_len - VNET
                self.slots[s].tx_packets += k
                self.slots[s].tx_bytes += nbytes
                self.m.tx_packets += k
                self.m.tx_bytes += nbytes
                sent += k
                continue
            err = errno
            if (err == ENETDOWN or err == ENXIO or err == ENODEV) and load_int(&self.resend):
                # The slave vanished or went down before netlink told us:
                # switch now and resend the same frames on the other one.
                self._hold(s, &self.m.send_failovers)
                continue
            if err == EINTR:
                continue
            if err == EAGAIN or err == ENOBUFS:
                # The slave's queue is full: wait (bounded) until it takes
                # frames again, else drop what is left of the batch. Never
                # drop one and retry the next at once (a busy loop that
                # drops nearly everything).
                if waits < TX_WAITS and self._wait_writable(fd):
                    waits += 1
                    continue
                self.m.drop_tx_nobufs += n - sent
                self.slots[s].tx_dropped += n - sent
                self.m.tx_dropped += n - sent
                return
            self.m.drop_tx_error += 1
            self.slots[s].tx_dropped += 1
            self.m.tx_dropped += 1
            sent += 1

    # ---- --tap-io uring (includes/tapring.h) ----

    cdef int _pump_tap_uring(self) noexcept nogil:
        """_pump_tap with the frames the multishot read left in provided
        buffers: no system call to read them. Returns 0, or the errno that
        ended the read when the TAP is gone (or the read cannot go on)."""
        cdef int k, i, n = 0, err
        k = tr_reap(&self.rd, self.txiov, C_BATCH)
        for i in range(k):
            if self.txiov[i].iov_len <= VNET:
                self.m.tx_received += 1
                self.m.drop_tap_read += 1
                self.m.tx_dropped += 1
                continue
            if n != i:
                self.txiov[n] = self.txiov[i]
            n += 1
        self.m.tx_received += n
        if n:
            self._send_batch(n)
        tr_release(&self.rd)
        if not self.rd.armed and not self.rd_closing:
            # It ends on ENOBUFS (every buffer was ours): the frames wait in
            # the TAP's queue until it is armed again, now that they are back.
            if self.rd.err:
                return self.rd.err
            return tr_arm(&self.rd)
        return 0

    cdef int _uring_arm(self) noexcept nogil:
        """Start the multishot read in this (the TX loop's) thread, whose
        task work its reads are. 0 or an errno."""
        if not self.uring:
            return 0
        self.rd_closing = 0
        return tr_arm(&self.rd)

    cdef void _uring_disarm(self) noexcept nogil:
        """Stop the read (the loop leaves; its thread may end, which would
        cancel it anyway) and send what it had read meanwhile."""
        cdef int waits = 0
        if not self.uring or not self.rd.armed:
            return
        self.rd_closing = 1
        tr_cancel(&self.rd)
        while self.rd.armed and waits < 20:
            if tr_wait(&self.rd) < 0:
                waits += 1
            self._pump_tap_uring()

    cdef int _wait_writable(self, int fd) noexcept nogil:
        """1 if fd can take a frame within TX_WAIT_MS, else 0. (ENOBUFS
        from a full qdisc can come with the socket writable at once: the
        caller's TX_WAITS bounds the retries then.)"""
        cdef pollfd p
        cdef int r
        p.fd = fd
        p.events = POLLOUT
        p.revents = 0
        r = poll(&p, 1, TX_WAIT_MS)
        if r > 0 and (p.revents & POLLOUT):
            return 1
        return 0

    cdef int _pump_slave(self, int s) noexcept nogil:
        """Receive a batch on slave s and deliver it to the master.
        Returns 0, or EBADFD if the TAP is gone."""
        cdef int fd = load_int(&self.fds[s])
        cdef int policy = load_int(&self.rx_policy)
        cdef int promisc = load_int(&self.promisc)
        cdef int k, i, act, deliver, grace = 0, err, nout = 0
        cdef uint64_t until = 0
        cdef unsigned int length
        cdef gro_frame *out
        cdef char *frame
        cdef cmsghdr *c
        cdef tpacket_auxdata *aux
        cdef virtio_net_hdr *vh
        cdef uint16_t tpid
        cdef uint16_t *tag
        if fd < 0:
            return 0
        for i in range(C_BATCH):
            self.rxmsg[i].msg_hdr.msg_namelen = sizeof(sockaddr_ll)
            self.rxmsg[i].msg_hdr.msg_controllen = CMSGSZ
            self.rxmsg[i].msg_hdr.msg_flags = 0
        k = recvmmsg(fd, self.rxmsg, C_BATCH, MSG_DONTWAIT | MSG_TRUNC, NULL)
        if k < 0:
            if errno == EINVAL:
                # The skb could not be described in a vnet header; the
                # kernel has consumed it (af_packet.c packet_rcv_vnet).
                self.m.rx_received += 1
                self.m.drop_bad_vnet += 1
                self.m.rx_dropped += 1
            return 0
        if policy == C_RX_ALL:
            deliver = 1
        elif policy == C_RX_KERNEL:
            deliver = s == 0 or load_int(&self.fds[0]) < 0
        else:
            act = self._active()
            deliver = act == s or act < 0
            grace = not deliver and self._grace(s)
            until = load_u64(&self.prev_until) if act == s else 0
        self.m.rx_received += k
        for i in range(k):
            length = self.rxmsg[i].msg_len
            self.slots[s].rx_packets += 1
            self.slots[s].rx_bytes += length - VNET
            if self.rxaddr[i].sll_pkttype == linux.PACKET_OUTGOING:
                # PACKET_IGNORE_OUTGOING missing: not ours to deliver
                self._rx_drop(s, &self.m.drop_outgoing)
                continue
            if (self.rxmsg[i].msg_hdr.msg_flags & MSG_TRUNC) or length > C_BUFSZ:
                self._rx_drop(s, &self.m.drop_truncated)
                continue
            if not deliver and not (grace and self.rxaddr[i].sll_pkttype == linux.PACKET_HOST):
                self._rx_drop(s, &self.m.drop_rx_policy)
                continue
            if until and self.rxaddr[i].sll_pkttype == linux.PACKET_HOST:
                # the network delivers the guest's unicast here now: the
                # old slave's grace ends (unless a newer switch began one)
                cas_u64(&self.prev_until, until, 0)
                until = 0
            if self.rxaddr[i].sll_pkttype == linux.PACKET_OTHERHOST and not promisc:
                self._rx_drop(s, &self.m.drop_otherhost)
                continue
            frame = <char *>self.rxiov[i].iov_base
            c = CMSG_FIRSTHDR(&self.rxmsg[i].msg_hdr)
            while c != NULL:
                if c.cmsg_level == system.SOL_PACKET and c.cmsg_type == linux.PACKET_AUXDATA:
                    aux = <tpacket_auxdata *>CMSG_DATA(c)
                    if aux.tp_status & linux.TP_STATUS_VLAN_VALID and length >= VNET + 12:
                        # The device stripped the tag (B-28): put it back
                        # between the MAC addresses and the ethertype.
                        tpid = 0x8100
                        if aux.tp_status & linux.TP_STATUS_VLAN_TPID_VALID:
                            tpid = aux.tp_vlan_tpid
                        memmove(frame - VLAN_HLEN, frame, VNET + 12)
                        frame -= VLAN_HLEN
                        tag = <uint16_t *>(frame + VNET + 12)
                        tag[0] = htons(tpid)
                        tag[1] = htons(aux.tp_vlan_tci)
                        vh = <virtio_net_hdr *>frame
                        if vh.flags & linux.VIRTIO_NET_HDR_F_NEEDS_CSUM:
                            vh.csum_start += VLAN_HLEN
                        if vh.gso_type != linux.VIRTIO_NET_HDR_GSO_NONE:
                            vh.hdr_len += VLAN_HLEN
                        length += VLAN_HLEN
                    break
                c = CMSG_NXTHDR(&self.rxmsg[i].msg_hdr, c)
            out = &self.rxout[nout]
            out.p = frame
            out.len = length
            out.cap = <unsigned int>(self.rxbuf + (i + 1) * (C_BUFSZ + VLAN_HLEN) - frame)
            out.segs = 1
            nout += 1
        if self.gro and nout > 1:
            self.m.rx_coalesced += gro.gro_batch(self.rxout, nout, VNET)
        return self._deliver(nout)

    cdef int _deliver(self, int nout) noexcept nogil:
        """Write the batch's frames (rxout) into the master: one write() each
        (syscalls), or all in one io_uring_enter (--tap-io uring, uring-write:
        the buffers are free again when it returns). 0, or EBADFD if the TAP
        is gone (see _pump_tap)."""
        cdef int i, err, nw = 0, gone = 0
        cdef gro_frame *out
        for i in range(nout):
            out = &self.rxout[i]
            if out.segs == 0:
                continue            # merged into an earlier frame
            if self.uring_wr:
                self.wfrom[nw] = i
                tr_write(&self.wr, nw, out.p, out.len)
                nw += 1
            elif write(self.tap_fd, out.p, out.len) < 0:
                err = errno
                self._tap_dropped(out)
                if err == EBADFD:
                    # what is left of the batch is not delivered either
                    for i in range(i + 1, nout):
                        self._tap_dropped(&self.rxout[i])
                    return EBADFD
            else:
                self._tap_delivered(out)
        if nw:
            tr_flush(&self.wr, nw, self.wres)
            for i in range(nw):
                out = &self.rxout[self.wfrom[i]]
                if self.wres[i] < 0:
                    self._tap_dropped(out)
                    if self.wres[i] == -EBADFD:
                        gone = EBADFD
                else:
                    self._tap_delivered(out)
        return gone

    cdef inline void _tap_delivered(self, gro_frame *out) noexcept nogil:
        self.m.rx_packets += out.segs
        # bytes as they were received, whether merged or not
        self.m.rx_bytes += out.len - VNET
        if out.segs > 1:
            self.m.rx_bytes += (out.segs - 1) * (<virtio_net_hdr *>out.p).hdr_len

    cdef inline void _tap_dropped(self, gro_frame *out) noexcept nogil:
        self.m.drop_tap_write += out.segs
        self.m.rx_dropped += out.segs

    cdef inline void _rx_drop(self, int s, uint64_t *reason) noexcept nogil:
        reason[0] += 1
        self.slots[s].rx_dropped += 1
        self.m.rx_dropped += 1


def gro_coalesce(frames):
    """Run the loop's GRO (netfo/gro.pxd) over one batch, for tests: frames
    are bytes (virtio-net header + Ethernet frame), in receive order, at most
    BATCH. Returns (the frames the loop would write, segments merged)."""
    cdef int n = len(frames), i, merged
    cdef gro_frame out[C_BATCH]
    cdef char *buf
    if n > C_BATCH:
        raise ValueError("at most %d frames" % C_BATCH)
    buf = <char *>malloc(C_BATCH * C_BUFSZ)
    if buf == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            b = bytes(frames[i])
            if len(b) > C_BUFSZ:
                raise ValueError("frame too big")
            memcpy(buf + i * C_BUFSZ, <char *>b, len(b))
            out[i].p = buf + i * C_BUFSZ
            out[i].len = len(b)
            out[i].cap = C_BUFSZ
            out[i].segs = 1
        merged = gro.gro_batch(out, n, VNET)
        return [out[i].p[:out[i].len] for i in range(n) if out[i].segs], merged
    finally:
        free(buf)
