# The Datapath's C layout: constants, counters and fields (see _fastpath.pyx).

from libc.stdint cimport int64_t, uint32_t, uint64_t

from .includes cimport linux
from .includes.tapring cimport tapring
from .includes.system cimport iovec, mmsghdr
from .gro cimport gro_frame


cdef enum:
    C_BATCH = 32
    VNET = linux.VNET_HDR_LEN   # sizeof(struct virtio_net_hdr)
    VLAN_HLEN = 4               # linux/if_vlan.h is kernel-internal
    C_BUFSZ = 67584             # vnet header + 64 KB GSO frame + Ethernet/VLAN headers
    CMSGSZ = 64
    NDEFER = 8                  # old slave sockets set_slave could not close yet
    TAG_TAP = 0
    TAG_SLOT0 = 1               # TAG_SLOT0 + slot
    TAG_CMD_TX = 3
    TAG_CMD_RX = 4
    TAG_NETLINK = 5
    TAG_CARRIER = 6             # the miimon timer
    # While nothing can transmit and frames keep coming, look for a slave
    # whose carrier is back at most this often (two sysfs reads each time)
    RECOVER_EVERY_NS = 1000000
    NLBUFSZ = 16384
    # A slave whose queue is full (EAGAIN, ENOBUFS): wait for it to take
    # frames again at most TX_WAITS times per batch, TX_WAIT_MS each, then
    # drop the rest of the batch (drop_tx_nobufs). Bounded: RX waits behind
    # it in a one-thread loop; never a busy retry.
    TX_WAITS = 2
    TX_WAIT_MS = 1
    C_RX_ACTIVE = 0
    C_RX_KERNEL = 1
    C_RX_ALL = 2
    # After a switch, the switch in front of the slaves keeps sending the
    # guest's unicast to the old slave's port until the announcement (or the
    # guest's next frame) reaches it: until the new slave receives unicast
    # for the guest, at most this long, the active policy still takes
    # unicast from the slave that transmitted before. (A guest that sends
    # nothing waits for the control plane's announcement: 0.1-0.5 s in a
    # TCG guest.) Broadcast and multicast arrive on both slaves and stay
    # one-slave-only: nothing is delivered twice.
    RX_GRACE_NS = 1000000000
    LOOP_TX = 0                 # loops[], acked[]: the loop that reads the TAP
    LOOP_RX = 1                 # ... and the one that reads the slaves
    C_TAP_IO_SYSCALLS = 0       # --tap-io: read()/write() per frame
    C_TAP_IO_URING = 1          # io_uring (tapring.h)
    C_TAP_IO_AUTO = 2           # C_TAP_IO_AUTO_IS where the kernel allows, else syscalls
    C_TAP_IO_URING_WRITE = 3    # io_uring for the TAP writes only
    C_TAP_IO_AUTO_IS = C_TAP_IO_URING_WRITE     # what measured faster: see README


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
    # What came in: frames read from the master (tx_received = tx_packets +
    # tx_dropped) and received on the slaves (rx_received = rx_packets +
    # rx_dropped), once the loop is between batches.
    uint64_t tx_received
    uint64_t rx_received
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
    uint64_t drop_outgoing       # RX of a frame the slave sent (PACKET_IGNORE_OUTGOING missing)
    uint64_t send_failovers      # active slave failed mid-send; loop switched
    uint64_t link_holds          # the loop left a slave itself: link event, not running
    uint64_t link_recoveries     # ... or took one whose carrier came back (none could transmit, or set_takeover)
    # RX segments merged into an earlier frame of their batch by --gro
    # (rx_packets still counts every segment delivered)
    uint64_t rx_coalesced


cdef class Datapath:
    # Set up once, then read-only.
    cdef int tap_fd, ep_tx, ep_rx, cmd_tx, cmd_rx, ack_fd, ev_fd, threads
    # Shared by the control thread and the loops: read and written only
    # through includes/atomics.pxd (acquire/release).
    cdef int fds[2]
    cdef int ifindex[2]
    cdef int ready[2]
    cdef int held[2]                  # held down by the loop until release()
    cdef int preferred                # slot chosen by the control plane
    cdef int resend                   # on a failed send, fall over and resend
    cdef int stopping
    cdef int rx_policy
    cdef int promisc
    cdef int carrier_off              # the master's carrier, as set_carrier() last set it
    cdef int takeover                 # set_takeover(): the slot taken as soon as it runs, or -1
    cdef uint64_t busy_poll_ns
    cdef int last_act                 # slot that transmitted as of the last change
    cdef int prev_act                 # the one before it, whose unicast is still taken
    cdef uint64_t prev_until          # ... until then (monotonic ns; 0 once the new one heard unicast)
    cdef uint64_t switched_ns         # when last_act last changed (monotonic ns)
    cdef int loops[2]                 # [tx, rx]: loops running now
    cdef uint64_t cmd_gen             # set_slave's generation
    cdef uint64_t acked[2]            # [tx, rx]: last generation each loop passed
    # The loops' own (or the control thread's while no loop runs).
    cdef int rx_watched[2]            # slave fds in ep_rx (the RX loop's view)
    cdef int name_of[2]               # ifindex whose name ifname[] holds (TX loop)
    cdef char ifname[2][16]           # the slave's name as last looked up (renames)
    cdef int carrier_fd[2]            # ... its /sys/class/net/*/carrier_down_count, or -1
    cdef int oper_fd[2]               # ... and its operstate, or -1
    cdef int64_t downs[2]             # ... as last read (TX loop)
    cdef int nl_fd                    # link events (RTMGRP_LINK), read by the TX loop
    cdef int tm_fd                    # miimon: timerfd, read by the TX loop
    cdef uint64_t recover_after       # next time _send_batch may look for a slave (TX loop)
    cdef int deferred[NDEFER]         # old sockets to close at the next quiescent point
    cdef slot_stats slots[2]
    cdef master_stats m
    # TAP -> slave batch
    cdef char *txbuf
    cdef mmsghdr txmsg[C_BATCH]
    cdef iovec txiov[C_BATCH]
    # slave -> TAP batch (each buffer has VLAN_HLEN of headroom)
    cdef char *rxbuf
    cdef mmsghdr rxmsg[C_BATCH]
    cdef iovec rxiov[C_BATCH]
    cdef linux.sockaddr_ll rxaddr[C_BATCH]
    cdef char rxcmsg[C_BATCH][CMSGSZ]
    cdef gro_frame rxout[C_BATCH]     # the frames of a batch that go to the master
    cdef int gro                      # coalesce TCP segments before the TAP write
    # --tap-io uring: TAP reads (TX loop) and writes (RX loop), one ring each
    cdef int uring                    # 1: the TAP is read through io_uring (rd)
    cdef int uring_wr                 # 1: ... and written through it (wr)
    cdef int uring_err                # why not (errno), when --tap-io auto fell back
    cdef int rd_closing               # the TX loop is stopping: do not re-arm
    cdef tapring rd, wr
    cdef int wres[C_BATCH]            # the writes' results
    cdef int wfrom[C_BATCH]           # ... and which of rxout each one wrote

    cdef int _watch(self, int ep, int fd, uint32_t tag) except -1
    cdef object _run(self, int ep, int first, int last)
    cdef void _defer(self, int fd) noexcept
    cdef void _close_deferred(self) noexcept
    cdef void _kick(self) noexcept nogil
    cdef int _await_acks(self, uint64_t gen, uint64_t deadline) noexcept nogil
    cdef void _ack(self, int which, int cmd_fd) noexcept nogil
    cdef int _active(self) noexcept nogil
    cdef void _note_active(self) noexcept nogil
    cdef bint _grace(self, int s) noexcept nogil
    cdef void _sync_rx_watch(self) noexcept nogil
    cdef int _loop(self, int ep) noexcept nogil
    cdef void _pump_links(self) noexcept nogil
    cdef int _link_ok(self, int s) noexcept nogil
    cdef int _name(self, int s, bint again) noexcept nogil
    cdef int _sysfs(self, int s, const char *attr) noexcept nogil
    cdef int64_t _downs(self, int s) noexcept nogil
    cdef int _lost_carrier(self, int s) noexcept nogil
    cdef void _pump_carrier(self) noexcept nogil
    cdef int _recover(self) noexcept nogil
    cdef void _take_over(self) noexcept nogil
    cdef bint _runs_again(self, int s) noexcept nogil
    cdef bint _oper_unknown(self, int s) noexcept nogil
    cdef void _take(self, int s) noexcept nogil
    cdef void _hold(self, int s, uint64_t *why) noexcept nogil
    cdef int _pump_tap(self) noexcept nogil
    cdef void _send_batch(self, int n) noexcept nogil
    cdef int _pump_tap_uring(self) noexcept nogil
    cdef int _uring_arm(self) noexcept nogil
    cdef void _uring_disarm(self) noexcept nogil
    cdef int _deliver(self, int nout) noexcept nogil
    cdef void _tap_delivered(self, gro_frame *out) noexcept nogil
    cdef void _tap_dropped(self, gro_frame *out) noexcept nogil
    cdef int _wait_writable(self, int fd) noexcept nogil
    cdef int _pump_slave(self, int s) noexcept nogil
    cdef void _rx_drop(self, int s, uint64_t *reason) noexcept nogil
