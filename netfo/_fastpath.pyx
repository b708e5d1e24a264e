# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The forwarding loop: TAP master <-> AF_PACKET slave sockets.

One loop, woken by epoll, runs with the GIL released and touches no Python
object per frame.  Frames carry a 10-byte virtio-net header on both sides
(TAP IFF_VNET_HDR, slave PACKET_VNET_HDR), so a 64 KB GSO segment is one read
and one write and is passed through unchanged.

The control plane talks to the loop in two ways:
  * set_ready(slot, flag): a plain store the loop reads per batch - the
    "one cheap call" that moves transmit between slaves;
  * set_slave(slot, fd, ifindex): swaps a slave socket; the old one is
    closed only once every running loop has acknowledged it from between two
    batches, never while one may still be using it.

The loop also reads link events itself (watch_links): a slave that the
kernel reports deleted, down or without carrier is held down at once, in the
loop's own thread, before the control plane has even been scheduled; the
control plane release()s it once it has decided on the slave's fresh state.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memmove, memset
from libc.errno cimport (errno, EAGAIN, EINTR, ENOBUFS, ENETDOWN, ENXIO,
                         ENODEV, EINVAL, EIO)

cdef extern from "<unistd.h>" nogil:
    ssize_t read(int fd, void *buf, size_t count)
    ssize_t write(int fd, const void *buf, size_t count)
    int close(int fd)

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    ssize_t recv(int fd, void *buf, size_t len, int flags)
    int recvmmsg(int fd, mmsghdr *vec, unsigned int vlen, int flags, void *timeout)
    int sendmmsg(int fd, mmsghdr *vec, unsigned int vlen, int flags)
    cmsghdr *CMSG_FIRSTHDR(msghdr *m)
    cmsghdr *CMSG_NXTHDR(msghdr *m, cmsghdr *c)
    unsigned char *CMSG_DATA(cmsghdr *c)
    int MSG_DONTWAIT, MSG_TRUNC

cdef extern from "<sys/epoll.h>" nogil:
    union epoll_data_t "epoll_data":
        uint32_t u32
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *ev)
    int epoll_wait(int epfd, epoll_event *evs, int maxevents, int timeout)
    int EPOLLIN, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CLOEXEC

cdef extern from "<sys/ioctl.h>" nogil:
    int ioctl(int fd, unsigned long req, ...)

cdef extern from "<net/if.h>" nogil:
    struct ifreq:
        char ifr_name[16]
        int ifr_ifindex
        short ifr_flags
    int IFF_UP, IFF_RUNNING

cdef extern from "<linux/sockios.h>" nogil:
    int SIOCGIFNAME, SIOCGIFFLAGS

cdef extern from "<linux/netlink.h>" nogil:
    struct nlmsghdr:
        uint32_t nlmsg_len
        uint16_t nlmsg_type

cdef extern from "<linux/rtnetlink.h>" nogil:
    struct ifinfomsg:
        int ifi_index
        unsigned int ifi_flags
    int RTM_NEWLINK, RTM_DELLINK

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK, EFD_CLOEXEC

cdef extern from "<linux/if_packet.h>" nogil:
    struct sockaddr_ll:
        unsigned short sll_family
        unsigned short sll_protocol
        int sll_ifindex
        unsigned short sll_hatype
        unsigned char sll_pkttype
        unsigned char sll_halen
        unsigned char sll_addr[8]
    struct tpacket_auxdata:
        uint32_t tp_status
        uint32_t tp_len
        uint32_t tp_snaplen
        uint16_t tp_mac
        uint16_t tp_net
        uint16_t tp_vlan_tci
        uint16_t tp_vlan_tpid
    int PACKET_AUXDATA, PACKET_OUTGOING, PACKET_OTHERHOST, PACKET_HOST
    int TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID

cdef extern from *:
    """
    #define NETFO_NLMSG_HDRLEN NLMSG_HDRLEN
    #define NETFO_SOL_PACKET 263
    #define netfo_barrier() __sync_synchronize()
    """
    int NETFO_SOL_PACKET
    int NLMSG_HDRLEN "NETFO_NLMSG_HDRLEN"
    void netfo_barrier() nogil

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_MONOTONIC

cdef inline uint64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000 + ts.tv_nsec

cdef extern from "<arpa/inet.h>" nogil:
    uint16_t htons(uint16_t)


cdef enum:
    BATCH = 32
    VNET = 10            # sizeof(struct virtio_net_hdr)
    VLAN_HLEN = 4
    BUFSZ = 67584        # vnet header + 64 KB GSO frame + Ethernet/VLAN headers
    CMSGSZ = 64
    VNET_NEEDS_CSUM = 1
    TAG_TAP = 0
    TAG_SLOT0 = 1        # TAG_SLOT0 + slot
    TAG_CMD_TX = 3
    TAG_CMD_RX = 4
    TAG_NETLINK = 5
    NLBUFSZ = 16384
    C_RX_ACTIVE = 0
    C_RX_KERNEL = 1
    C_RX_ALL = 2
    # After a switch, the switch in front of the slaves keeps sending the
    # guest's unicast to the old slave's port until the announcement (or the
    # guest's next frame) reaches it: for this long, the active policy still
    # takes unicast from the slave that transmitted before. Broadcast and
    # multicast arrive on both slaves and stay one-slave-only: nothing is
    # delivered twice.
    RX_GRACE_NS = 100000000

# Slots: the roles a slave can hold.
PRIMARY = 0
STANDBY = 1
# Receive policies (see README: "rx policy").
RX_ACTIVE = C_RX_ACTIVE  # deliver only from the slave that transmits (bonding)
RX_KERNEL = C_RX_KERNEL  # net_failover: standby RX dropped while a primary exists
RX_ALL = C_RX_ALL        # deliver from both slaves

cdef struct slot_stats:
    uint64_t rx_packets
    uint64_t rx_bytes
    uint64_t tx_packets
    uint64_t tx_bytes
    uint64_t rx_dropped      # received but not delivered (policy, other host)
    uint64_t tx_dropped      # frame lost on this slave (no room, error)

cdef struct master_stats:
    uint64_t rx_packets
    uint64_t rx_bytes
    uint64_t tx_packets
    uint64_t tx_bytes
    uint64_t rx_dropped
    uint64_t tx_dropped
    # drop reasons (each drop is counted in exactly one of these)
    uint64_t drop_no_slave       # TX with no ready slave (B-19)
    uint64_t drop_rx_policy      # RX on a slave the policy does not deliver
    uint64_t drop_otherhost      # RX unicast for another MAC
    uint64_t drop_truncated      # RX larger than our buffers
    uint64_t drop_bad_vnet       # RX the kernel could not describe in a vnet header
    uint64_t drop_tap_write      # TAP refused the frame (e.g. master down)
    uint64_t drop_tap_read       # TAP gave a frame without a payload
    uint64_t drop_tx_nobufs      # slave queue full
    uint64_t drop_tx_error       # slave refused the frame (e.g. too big)
    uint64_t send_failovers      # active slave failed mid-send; loop switched
    uint64_t link_holds          # the loop left a slave itself: link event, not running


cdef class Datapath:
    """Forwarding state for one failover master.

    threads=1: run() serves both directions in one loop.  threads=2:
    run_tx() (master -> slave) and run_rx() (slaves -> master) each run in a
    thread of their own, so a burst one way never waits behind the other.
    """

    cdef int tap_fd, ep_tx, ep_rx, cmd_tx, cmd_rx, ack_fd, threads
    cdef volatile int fds[2]
    cdef int rx_watched[2]            # slave fds in ep_rx (the RX loop's view)
    cdef volatile int ready[2]
    cdef volatile int held[2]         # held down by the loop until release()
    cdef int ifindex[2]
    cdef char ifname[2][16]           # the slave's name as last looked up (renames)
    cdef int nl_fd                    # link events (RTMGRP_LINK), read by the TX loop
    cdef volatile int preferred       # slot chosen by the control plane
    cdef int resend                   # on a failed send, fall over and resend
    cdef volatile int stopping
    cdef int rx_policy
    cdef volatile int last_act         # slot that transmitted as of the last change
    cdef volatile int prev_act         # the one before it, whose unicast is still taken
    cdef volatile uint64_t prev_until  # ... until then (monotonic ns)
    cdef uint64_t busy_poll_ns
    cdef int promisc
    cdef int running                  # loops running now
    cdef volatile unsigned long cmd_gen
    cdef volatile unsigned long acked[2]    # [tx, rx]: last command each loop passed
    cdef slot_stats slots[2]
    cdef master_stats m
    # TAP -> slave batch
    cdef char *txbuf
    cdef mmsghdr txmsg[BATCH]
    cdef iovec txiov[BATCH]
    # slave -> TAP batch (each buffer has VLAN_HLEN of headroom)
    cdef char *rxbuf
    cdef mmsghdr rxmsg[BATCH]
    cdef iovec rxiov[BATCH]
    cdef sockaddr_ll rxaddr[BATCH]
    cdef char rxcmsg[BATCH][CMSGSZ]

    def __cinit__(self, int tap_fd, int rx_policy=RX_ACTIVE, int threads=1):
        cdef int i
        if threads not in (1, 2):
            raise ValueError("threads must be 1 or 2")
        self.tap_fd = tap_fd
        self.threads = threads
        self.fds[0] = self.fds[1] = -1
        self.rx_watched[0] = self.rx_watched[1] = -1
        self.ready[0] = self.ready[1] = 0
        self.held[0] = self.held[1] = 0
        self.ifindex[0] = self.ifindex[1] = 0
        self.nl_fd = -1
        self.last_act = self.prev_act = -1
        self.prev_until = 0
        self.resend = 1
        self.ep_tx = self.ep_rx = self.cmd_tx = self.cmd_rx = self.ack_fd = -1
        self.txbuf = <char *>malloc(BATCH * BUFSZ)
        self.rxbuf = <char *>malloc(BATCH * (BUFSZ + VLAN_HLEN))
        if self.txbuf == NULL or self.rxbuf == NULL:
            raise MemoryError()
        memset(self.txmsg, 0, sizeof(self.txmsg))
        memset(self.rxmsg, 0, sizeof(self.rxmsg))
        memset(&self.m, 0, sizeof(self.m))
        memset(self.slots, 0, sizeof(self.slots))
        for i in range(BATCH):
            self.txiov[i].iov_base = self.txbuf + i * BUFSZ
            self.txmsg[i].msg_hdr.msg_iov = &self.txiov[i]
            self.txmsg[i].msg_hdr.msg_iovlen = 1
            self.rxiov[i].iov_base = self.rxbuf + i * (BUFSZ + VLAN_HLEN) + VLAN_HLEN
            self.rxiov[i].iov_len = BUFSZ
            self.rxmsg[i].msg_hdr.msg_iov = &self.rxiov[i]
            self.rxmsg[i].msg_hdr.msg_iovlen = 1
            self.rxmsg[i].msg_hdr.msg_name = &self.rxaddr[i]
            self.rxmsg[i].msg_hdr.msg_control = self.rxcmsg[i]
        self.set_rx_policy(rx_policy)
        self.ep_tx = epoll_create1(EPOLL_CLOEXEC)
        self.ep_rx = self.ep_tx if threads == 1 else epoll_create1(EPOLL_CLOEXEC)
        self.cmd_tx = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        self.cmd_rx = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        self.ack_fd = eventfd(0, EFD_CLOEXEC)
        if min(self.ep_tx, self.ep_rx, self.cmd_tx, self.cmd_rx, self.ack_fd) < 0:
            raise OSError(errno, "datapath: epoll/eventfd setup failed")
        self._watch(self.ep_tx, tap_fd, TAG_TAP)
        self._watch(self.ep_tx, self.cmd_tx, TAG_CMD_TX)
        self._watch(self.ep_rx, self.cmd_rx, TAG_CMD_RX)

    def __dealloc__(self):
        cdef int i
        for i in range(2):
            if self.fds[i] >= 0:
                close(self.fds[i])
        if self.ep_rx != self.ep_tx and self.ep_rx >= 0:
            close(self.ep_rx)
        if self.nl_fd >= 0:
            close(self.nl_fd)
        for i in (self.ep_tx, self.cmd_tx, self.cmd_rx, self.ack_fd):
            if i >= 0:
                close(i)
        free(self.txbuf)
        free(self.rxbuf)

    cdef int _watch(self, int ep, int fd, uint32_t tag) except -1:
        cdef epoll_event ev
        ev.events = EPOLLIN
        ev.data.u32 = tag
        if epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0:
            raise OSError(errno, "datapath: epoll_ctl failed")
        return 0

    # ---- control-plane API (called with the GIL, from another thread) ----

    def set_rx_policy(self, int policy):
        if policy not in (RX_ACTIVE, RX_KERNEL, RX_ALL):
            raise ValueError("unknown rx policy %d" % policy)
        self.rx_policy = policy

    def set_busy_poll(self, unsigned int usec):
        """Poll for usec after the last frame before sleeping (0: never)."""
        self.busy_poll_ns = usec * 1000

    def set_promisc(self, bint on):
        """Deliver unicast for other hosts too (the master is promiscuous)."""
        self.promisc = on

    def set_ready(self, int slot, bint ready):
        """Tell the loops whether a slave may transmit (admin up and carrier).
        While the loop holds the slave down, it stays not ready."""
        self.ready[slot & 1] = ready and not self.held[slot & 1]
        self._note_active()

    def release(self, int slot):
        """End the loop's hold on slot: call before reading the slave's state
        afresh, then set_ready() from what was read."""
        self.held[slot & 1] = 0

    def watch_links(self, int fd):
        """Read link events from fd (a netlink socket bound to RTMGRP_LINK,
        non-blocking; the datapath owns it from now on)."""
        if self.nl_fd >= 0:
            raise RuntimeError("already watching links")
        self.nl_fd = fd
        self._watch(self.ep_tx, fd, TAG_NETLINK)

    def set_resend(self, bint on):
        """On a send that fails because the slave is gone or down, switch and
        resend (default), or drop the frame (net_failover's behaviour)."""
        self.resend = on

    def set_preferred(self, int slot):
        """Transmit via slot while it is ready, else via the other one.

        The control plane's choice (updelay, reselect, manual) goes here;
        readiness stays separate so that a send error can still fall over
        to the other slave at once.
        """
        self.preferred = slot & 1
        self._note_active()

    def set_slave(self, int slot, int fd, int ifindex=0):
        """Give the loops slave socket fd for slot (-1: no slave), bound to
        link ifindex (whose events the loop watches).

        The datapath owns fd from now on.  The previous socket is closed only
        after every running loop has passed a point between batches (a
        quiescent state), so no loop can still be using it.
        """
        cdef int old
        cdef unsigned long gen
        if slot not in (PRIMARY, STANDBY):
            raise ValueError("slot must be PRIMARY or STANDBY")
        old = self.fds[slot]
        memset(&self.slots[slot], 0, sizeof(slot_stats))
        if slot == self.prev_act:
            self.prev_until = 0         # a new socket's frames are no old slave's
        self.ready[slot] = 0
        self.held[slot] = 0
        self.ifindex[slot] = ifindex if fd >= 0 else 0
        self.ifname[slot][0] = 0
        self.fds[slot] = fd
        self._note_active()
        netfo_barrier()
        self.cmd_gen += 1
        gen = self.cmd_gen
        if self.running:
            self._kick()
            with nogil:
                while self.acked[0] != gen or self.acked[1] != gen:
                    self._wait_ack()
        else:
            self._sync_rx_watch()
        if old >= 0:
            close(old)

    def active(self):
        """Slot that transmits now (PRIMARY, STANDBY) or -1 (B-19)."""
        return self._active()

    def fd(self, int slot):
        """The slave socket of slot, or -1: for setsockopt, never to close."""
        return self.fds[slot & 1]

    def stop(self):
        """Make the loops return after their current batch."""
        self.stopping = 1
        self._kick()

    def run(self):
        """Both directions in one loop (threads=1); returns after stop()."""
        if self.threads != 1:
            raise RuntimeError("threads=2: call run_tx() and run_rx() in two threads")
        self._run(self.ep_tx)

    def run_tx(self):
        """Master -> slave loop (threads=2)."""
        self._run(self.ep_tx)

    def run_rx(self):
        """Slaves -> master loop (threads=2)."""
        self._run(self.ep_rx)

    cdef _run(self, int ep):
        self.running += 1
        try:
            with nogil:
                self._loop(ep)
        finally:
            self.running -= 1

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

    cdef void _wait_ack(self) noexcept nogil:
        cdef uint64_t v
        read(self.ack_fd, &v, 8)

    cdef void _ack(self, int which, int cmd_fd) noexcept nogil:
        """This loop is between batches: it holds no slave fd any more."""
        cdef uint64_t v = 1
        read(cmd_fd, &v, 8)
        netfo_barrier()
        self.acked[which] = self.cmd_gen
        v = 1
        write(self.ack_fd, &v, 8)

    cdef inline int _active(self) noexcept nogil:
        cdef int p = self.preferred, q = 1 - self.preferred
        if self.fds[p] >= 0 and self.ready[p]:
            return p
        if self.fds[q] >= 0 and self.ready[q]:
            return q
        return -1

    cdef void _note_active(self) noexcept nogil:
        """Called wherever the transmitting slot may change: remember the old one."""
        cdef int a = self._active()
        if a != self.last_act:
            self.prev_act = self.last_act
            self.prev_until = monotonic_ns() + RX_GRACE_NS
            self.last_act = a

    cdef inline bint _grace(self, int s) noexcept nogil:
        return s == self.prev_act and monotonic_ns() < self.prev_until

    cdef void _sync_rx_watch(self) noexcept nogil:
        """Make ep_rx watch exactly the current slave fds."""
        cdef int slot, fd
        cdef epoll_event ev
        for slot in range(2):
            fd = self.fds[slot]
            if fd == self.rx_watched[slot]:
                continue
            if self.rx_watched[slot] >= 0:
                epoll_ctl(self.ep_rx, EPOLL_CTL_DEL, self.rx_watched[slot], &ev)
            if fd >= 0:
                ev.events = EPOLLIN
                ev.data.u32 = TAG_SLOT0 + slot
                epoll_ctl(self.ep_rx, EPOLL_CTL_ADD, fd, &ev)
            self.rx_watched[slot] = fd

    cdef void _loop(self, int ep) noexcept nogil:
        cdef epoll_event evs[4]
        cdef int n, i
        cdef uint32_t tag
        cdef uint64_t idle_since = 0, now
        while not self.stopping:
            # Busy polling: keep looking for busy_poll_ns after the last
            # frame before sleeping, so a reply that comes back within that
            # time is not delayed by a wake-up (tens of us on a VM).
            n = epoll_wait(ep, evs, 4, 0 if idle_since else -1)
            if n == 0:
                now = monotonic_ns()
                if now - idle_since > self.busy_poll_ns:
                    idle_since = 0
                continue
            if n < 0:
                if errno == EINTR:
                    continue
                break
            if self.busy_poll_ns:
                idle_since = monotonic_ns()
            for i in range(n):
                tag = evs[i].data.u32
                if tag == TAG_TAP:
                    self._pump_tap()
                elif tag == TAG_CMD_TX:
                    self._ack(0, self.cmd_tx)
                elif tag == TAG_CMD_RX:
                    self._sync_rx_watch()
                    self._ack(1, self.cmd_rx)
                elif tag == TAG_NETLINK:
                    self._pump_links()
                else:
                    self._pump_slave(tag - TAG_SLOT0)

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
                        if ifi.ifi_index == self.ifindex[s] and self.ready[s] and (
                                h.nlmsg_type == RTM_DELLINK or
                                not (ifi.ifi_flags & IFF_UP and ifi.ifi_flags & IFF_RUNNING)) \
                                and not self._link_ok(s):
                            self._hold(s, &self.m.link_holds)
                pos += (h.nlmsg_len + 3) & ~3

    cdef int _link_ok(self, int s) noexcept nogil:
        """Slot s's link, as it is now: up and running (0 if gone). One
        ioctl by the cached name; the name is looked up again if it fails."""
        cdef ifreq ifr
        cdef int attempt
        if self.fds[s] < 0:
            return 0
        if self.ifindex[s] == 0:
            return 1                    # set_slave() was not told which link
        for attempt in range(2):
            if self.ifname[s][0] == 0 or attempt == 1:
                memset(&ifr, 0, sizeof(ifr))
                ifr.ifr_ifindex = self.ifindex[s]
                if ioctl(self.fds[s], SIOCGIFNAME, &ifr) < 0:
                    return 0
                memcpy(self.ifname[s], ifr.ifr_name, 16)
            memset(&ifr, 0, sizeof(ifr))
            memcpy(ifr.ifr_name, self.ifname[s], 16)
            if ioctl(self.fds[s], SIOCGIFFLAGS, &ifr) == 0:
                return (ifr.ifr_flags & IFF_UP) != 0 and (ifr.ifr_flags & IFF_RUNNING) != 0
        return 0

    cdef inline void _hold(self, int s, uint64_t *why) noexcept nogil:
        """Stop transmitting via s until the control plane release()s it;
        count it in why."""
        self.held[s] = 1
        self.ready[s] = 0
        self._note_active()
        why[0] += 1

    cdef void _pump_tap(self) noexcept nogil:
        """Read a batch from the master and send it via the active slave."""
        cdef int n = 0, sent = 0, s, k, err, i
        cdef ssize_t r
        cdef uint64_t nbytes
        while n < BATCH:
            r = read(self.tap_fd, self.txiov[n].iov_base, BUFSZ)
            if r < 0:
                break
            if r <= VNET:
                self.m.drop_tap_read += 1
                self.m.tx_dropped += 1
                continue
            self.txiov[n].iov_len = r
            n += 1
        while sent < n:
            s = self._active()
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
            k = sendmmsg(self.fds[s], &self.txmsg[sent], n - sent, 0)
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
            if (err == ENETDOWN or err == ENXIO or err == ENODEV) and self.resend:
                # The slave vanished or went down before netlink told us:
                # switch now and resend the same frames on the other one.
                self._hold(s, &self.m.send_failovers)
                continue
            if err == EAGAIN or err == ENOBUFS:
                self.m.drop_tx_nobufs += 1
            else:
                self.m.drop_tx_error += 1
            self.slots[s].tx_dropped += 1
            self.m.tx_dropped += 1
            sent += 1

    cdef void _pump_slave(self, int s) noexcept nogil:
        """Receive a batch on slave s and deliver it to the master."""
        cdef int fd = self.fds[s]
        cdef int k, i, act, deliver, grace = 0
        cdef unsigned int length
        cdef char *frame
        cdef cmsghdr *c
        cdef tpacket_auxdata *aux
        cdef uint16_t tpid
        cdef uint16_t *hdr16
        if fd < 0:
            return
        for i in range(BATCH):
            self.rxmsg[i].msg_hdr.msg_namelen = sizeof(sockaddr_ll)
            self.rxmsg[i].msg_hdr.msg_controllen = CMSGSZ
            self.rxmsg[i].msg_hdr.msg_flags = 0
        k = recvmmsg(fd, self.rxmsg, BATCH, MSG_DONTWAIT | MSG_TRUNC, NULL)
        if k < 0:
            if errno == EINVAL:
                # The skb could not be described in a vnet header; the
                # kernel has consumed it (af_packet.c packet_rcv_vnet).
                self.m.drop_bad_vnet += 1
                self.m.rx_dropped += 1
            return
        if self.rx_policy == C_RX_ALL:
            deliver = 1
        elif self.rx_policy == C_RX_KERNEL:
            deliver = s == 0 or self.fds[0] < 0
        else:
            act = self._active()
            deliver = act == s or act < 0
            grace = not deliver and self._grace(s)
        for i in range(k):
            length = self.rxmsg[i].msg_len
            self.slots[s].rx_packets += 1
            self.slots[s].rx_bytes += length - VNET
            if self.rxaddr[i].sll_pkttype == PACKET_OUTGOING:
                continue    # PACKET_IGNORE_OUTGOING missing: not ours to deliver
            if (self.rxmsg[i].msg_hdr.msg_flags & MSG_TRUNC) or length > BUFSZ:
                self._rx_drop(s, &self.m.drop_truncated)
                continue
            if not deliver and not (grace and self.rxaddr[i].sll_pkttype == PACKET_HOST):
                self._rx_drop(s, &self.m.drop_rx_policy)
                continue
            if self.rxaddr[i].sll_pkttype == PACKET_OTHERHOST and not self.promisc:
                self._rx_drop(s, &self.m.drop_otherhost)
                continue
            frame = <char *>self.rxiov[i].iov_base
            c = CMSG_FIRSTHDR(&self.rxmsg[i].msg_hdr)
            while c != NULL:
                if c.cmsg_level == NETFO_SOL_PACKET and c.cmsg_type == PACKET_AUXDATA:
                    aux = <tpacket_auxdata *>CMSG_DATA(c)
                    if aux.tp_status & TP_STATUS_VLAN_VALID and length >= VNET + 12:
                        # The device stripped the tag (B-28): put it back
                        # between the MAC addresses and the ethertype.
                        tpid = 0x8100
                        if aux.tp_status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = aux.tp_vlan_tpid
                        memmove(frame - VLAN_HLEN, frame, VNET + 12)
                        frame -= VLAN_HLEN
                        hdr16 = <uint16_t *>(frame + VNET + 12)
                        hdr16[0] = htons(tpid)
                        hdr16[1] = htons(aux.tp_vlan_tci)
                        hdr16 = <uint16_t *>frame
                        if (<uint8_t *>frame)[0] & VNET_NEEDS_CSUM:
                            hdr16[3] += VLAN_HLEN     # csum_start
                        if (<uint8_t *>frame)[1] != 0:
                            hdr16[1] += VLAN_HLEN     # hdr_len
                        length += VLAN_HLEN
                    break
                c = CMSG_NXTHDR(&self.rxmsg[i].msg_hdr, c)
            if write(self.tap_fd, frame, length) < 0:
                self.m.drop_tap_write += 1
                self.m.rx_dropped += 1
                continue
            self.m.rx_packets += 1
            self.m.rx_bytes += length - VNET

    cdef inline void _rx_drop(self, int s, uint64_t *reason) noexcept nogil:
        reason[0] += 1
        self.slots[s].rx_dropped += 1
        self.m.rx_dropped += 1
