# Userspace GRO for the slave -> TAP direction (--gro): within one receive
# batch, the consecutive TCP segments of a flow become one GSO frame with a
# virtio-net header, so the master's stack runs once per 64 KB instead of once
# per MTU-sized frame. The merge rules are the kernel's (tcp_gro_receive,
# inet_gro_receive, ipv6_gro_receive): anything GRO would not merge is written
# as it came. nogil, no allocation; the caller's buffers must have room to
# grow a frame to a 64 KB IP packet (gro_frame.cap).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memcmp

cdef extern from "<linux/virtio_net.h>" nogil:
    int VIRTIO_NET_HDR_F_NEEDS_CSUM
    int VIRTIO_NET_HDR_F_DATA_VALID
    int VIRTIO_NET_HDR_GSO_NONE
    int VIRTIO_NET_HDR_GSO_TCPV4
    int VIRTIO_NET_HDR_GSO_TCPV6

cdef extern from "<arpa/inet.h>" nogil:
    uint16_t g_ntohs "ntohs"(uint16_t)
    uint16_t g_htons "htons"(uint16_t)
    uint32_t g_ntohl "ntohl"(uint32_t)


cdef struct gro_frame:
    char *p                 # virtio-net header + Ethernet frame
    unsigned int len
    unsigned int cap        # bytes p may grow to
    int segs                # TCP segments it carries; 0: merged into an earlier one


cdef struct _seg:           # what gro_batch learnt about one frame
    int v6                  # flow key: IP version, addresses, ports
    int l3, l4, pay         # offsets from p: IP header, TCP header, payload
    unsigned int plen       # payload bytes
    uint32_t seq
    uint8_t flags
    int ok                  # may be merged (head or follower)
    int open                # head of a candidate still taking segments
    int verified            # its checksum is known good
    unsigned int mss        # as head: gso_size
    uint32_t next_seq       # as head: seq the next segment must carry


cdef enum:
    _ETH = 14
    _TH_FIN = 0x01
    _TH_SYN = 0x02
    _TH_RST = 0x04
    _TH_PSH = 0x08
    _TH_ACK = 0x10
    _TH_URG = 0x20
    _TH_ECE = 0x40
    _TH_CWR = 0x80
    _IP_MAX = 65535


cdef inline uint16_t _ld16(const char *p) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return v


cdef inline uint32_t _ld32(const char *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline uint64_t _sum(const char *p, size_t n, uint64_t s) noexcept nogil:
    """Ones' complement sum of n bytes (from an even offset), in memory order."""
    cdef uint16_t h = 0
    while n >= 4:
        s += _ld32(p)
        p += 4
        n -= 4
    if n >= 2:
        s += _ld16(p)
        p += 2
        n -= 2
    if n:
        memcpy(&h, p, 1)
        s += h
    return s


cdef inline uint16_t _fold(uint64_t s) noexcept nogil:
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return <uint16_t>s


cdef inline uint64_t _pseudo(const char *ip, int v6, unsigned int tcplen) noexcept nogil:
    """The TCP pseudo-header's sum for a segment of tcplen bytes."""
    if v6:
        return _sum(ip + 8, 32, 0) + g_htons(6) + g_htons(<uint16_t>(tcplen >> 16)) \
            + g_htons(<uint16_t>(tcplen & 0xffff))
    return _sum(ip + 12, 8, 0) + g_htons(6) + g_htons(<uint16_t>tcplen)


cdef inline int _parse(gro_frame *f, int vnet, _seg *g) noexcept nogil:
    """Fill g from an untagged IPv4/IPv6 TCP frame: 1 if it is one (g.ok
    says whether GRO may merge it), 0 if not TCP (left alone)."""
    cdef const char *e = f.p + vnet
    cdef const uint8_t *ip = <const uint8_t *>(e + _ETH)
    cdef const uint8_t *th
    cdef const uint8_t *vh = <const uint8_t *>f.p
    cdef unsigned int avail, iplen, hl, thl
    cdef uint16_t etype
    g.ok = g.open = g.verified = 0
    if f.len < <unsigned int>(vnet + _ETH + 20):
        return 0
    avail = f.len - vnet - _ETH
    etype = g_ntohs(_ld16(e + 12))
    if etype == 0x0800:
        if (ip[0] >> 4) != 4 or ip[9] != 6:
            return 0
        hl = (ip[0] & 15) * 4
        iplen = g_ntohs(_ld16(<const char *>ip + 2))
        if g_ntohs(_ld16(<const char *>ip + 6)) & 0x3fff:
            return 0                # a fragment: no ports to key it by
        g.v6 = 0
    elif etype == 0x86dd:
        if avail < 40 or (ip[0] >> 4) != 6 or ip[6] != 6:
            return 0                # extension headers: GRO would walk them, we do not
        hl = 40
        iplen = 40 + g_ntohs(_ld16(<const char *>ip + 4))
        g.v6 = 1
    else:
        return 0
    if hl < 20 or iplen > avail or iplen < hl + 20:
        return 0
    th = ip + hl
    thl = (th[12] >> 4) * 4
    if thl < 20 or hl + thl > iplen:
        return 0
    g.l3 = vnet + _ETH
    g.l4 = g.l3 + hl
    g.pay = g.l4 + thl
    g.plen = iplen - hl - thl
    g.seq = g_ntohl(_ld32(<const char *>th + 4))
    g.flags = th[13]
    # Mergeable: a plain data segment, IPv4 without options, and a frame that
    # is not already GSO (offload mode hands over 64 KB frames as they are).
    g.ok = g.plen > 0 and (vh[1] == VIRTIO_NET_HDR_GSO_NONE) and (g.v6 or hl == 20) \
        and (g.flags & (_TH_SYN | _TH_RST | _TH_URG | _TH_CWR)) == 0 and (g.flags & _TH_ACK)
    # Verified: the device (DATA_VALID) or the sending stack (NEEDS_CSUM:
    # a partial sum still to be completed) vouches for the payload.
    g.verified = (vh[0] & (VIRTIO_NET_HDR_F_DATA_VALID | VIRTIO_NET_HDR_F_NEEDS_CSUM)) != 0
    return 1


cdef inline int _verify(gro_frame *f, _seg *g) noexcept nogil:
    """Check a full checksum as kernel GRO does (skb_gro_checksum_validate):
    a merged frame goes up with CHECKSUM_PARTIAL and is never checked again."""
    cdef unsigned int tcplen
    if not g.verified:
        tcplen = g.pay - g.l4 + g.plen
        g.verified = _fold(_sum(f.p + g.l4, tcplen, _pseudo(f.p + g.l3, g.v6, tcplen))) == 0xffff
    return g.verified


cdef inline int _same_flow(gro_frame *a, _seg *x, gro_frame *b, _seg *y) noexcept nogil:
    if x.v6 != y.v6 or x.l3 != y.l3:
        return 0
    if memcmp(a.p + x.l4, b.p + y.l4, 4) != 0:                    # ports
        return 0
    if x.v6:
        return memcmp(a.p + x.l3 + 8, b.p + y.l3 + 8, 32) == 0
    return memcmp(a.p + x.l3 + 12, b.p + y.l3 + 12, 8) == 0


cdef inline int _can_merge(gro_frame *h, _seg *x, gro_frame *f, _seg *y) noexcept nogil:
    """May segment y follow head x (same flow): the fields tcp_gro_receive
    and inet/ipv6_gro_receive compare, and what the merged frame can hold."""
    cdef const char *a = h.p
    cdef const char *b = f.p
    cdef unsigned int thl = x.pay - x.l4
    cdef unsigned int iplen = x.pay - x.l3 + x.plen
    cdef uint16_t ida, idb
    if not y.ok or y.seq != x.next_seq or y.plen > x.mss:
        return 0
    if (y.pay - y.l4) != thl or (y.flags & ~(_TH_PSH | _TH_FIN)) != x.flags:
        return 0
    if memcmp(a + x.l3 - _ETH, b + y.l3 - _ETH, 12) != 0:          # MAC addresses
        return 0
    # ack, then data offset + window, then options (timestamps included)
    if memcmp(a + x.l4 + 8, b + y.l4 + 8, 4) != 0 or memcmp(a + x.l4 + 12, b + y.l4 + 12, 1) != 0 \
            or memcmp(a + x.l4 + 14, b + y.l4 + 14, 2) != 0 \
            or memcmp(a + x.l4 + 20, b + y.l4 + 20, thl - 20) != 0:
        return 0
    if x.v6:
        # version, traffic class, flow label; hop limit
        if memcmp(a + x.l3, b + y.l3, 4) != 0 or a[x.l3 + 7] != b[y.l3 + 7]:
            return 0
    else:
        # tos, ttl, DF equal; the ID counts up by one per segment, or stays
        # fixed under DF (inet_gro_receive's flush_id)
        if a[x.l3 + 1] != b[y.l3 + 1] or a[x.l3 + 8] != b[y.l3 + 8] \
                or (a[x.l3 + 6] ^ b[y.l3 + 6]) & 0x40:
            return 0
        ida = g_ntohs(_ld16(a + x.l3 + 4))
        idb = g_ntohs(_ld16(b + y.l3 + 4))
        if idb != <uint16_t>(ida + h.segs) and not (idb == ida and a[x.l3 + 6] & 0x40):
            return 0
    if iplen + y.plen > _IP_MAX or <unsigned int>x.pay + x.plen + y.plen > h.cap:
        return 0
    return _verify(f, y) and _verify(h, x)


cdef inline void _finish(gro_frame *h, _seg *x) noexcept nogil:
    """Make a head that took segments one GSO frame: lengths, IPv4 header
    checksum, the TCP pseudo-header sum as checksum (CHECKSUM_PARTIAL, as
    tcp_gro_complete leaves it), and the virtio-net header saying so."""
    cdef char *ip = h.p + x.l3
    cdef unsigned int iplen = x.pay - x.l3 + x.plen
    cdef unsigned int tcplen = x.pay - x.l4 + x.plen
    cdef uint16_t v
    cdef uint16_t *vh = <uint16_t *>(h.p + 2)
    if x.v6:
        v = g_htons(<uint16_t>(iplen - 40))
        memcpy(ip + 4, &v, 2)
    else:
        v = g_htons(<uint16_t>iplen)
        memcpy(ip + 2, &v, 2)
        v = 0
        memcpy(ip + 10, &v, 2)
        v = ~_fold(_sum(ip, 20, 0))
        memcpy(ip + 10, &v, 2)
    v = _fold(_pseudo(ip, x.v6, tcplen))
    memcpy(h.p + x.l4 + 16, &v, 2)
    (<uint8_t *>h.p)[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM
    (<uint8_t *>h.p)[1] = VIRTIO_NET_HDR_GSO_TCPV6 if x.v6 else VIRTIO_NET_HDR_GSO_TCPV4
    vh[0] = <uint16_t>(x.pay - x.l3 + _ETH)        # hdr_len: Ethernet + IP + TCP
    vh[1] = <uint16_t>x.mss                         # gso_size
    vh[2] = <uint16_t>(x.l4 - x.l3 + _ETH)          # csum_start
    vh[3] = 16                                      # csum_offset: tcphdr.check
    h.len = x.pay + x.plen


cdef inline int gro_batch(gro_frame *f, int n, int vnet) noexcept nogil:
    """Coalesce f[0..n) in place; returns how many segments were merged into
    an earlier frame (their segs become 0: not to be written). A flow's
    frames keep their order: a segment that cannot follow closes its flow's
    open head and may open a new one."""
    cdef _seg g[64]
    cdef int i, j, found, merged = 0
    if n > 64:
        n = 64
    for i in range(n):
        f[i].segs = 1
        if not _parse(&f[i], vnet, &g[i]):
            continue
        found = -1
        for j in range(i - 1, -1, -1):
            if g[j].open and _same_flow(&f[j], &g[j], &f[i], &g[i]):
                found = j
                break
        if found >= 0 and _can_merge(&f[found], &g[found], &f[i], &g[i]):
            j = found
            memcpy(f[j].p + g[j].pay + g[j].plen, f[i].p + g[i].pay, g[i].plen)
            g[j].plen += g[i].plen
            g[j].next_seq = g[i].seq + g[i].plen
            f[j].segs += 1
            f[i].segs = 0
            merged += 1
            # PSH/FIN end the merge, carried on the merged frame; so does
            # a short segment (it was the last of a send)
            (<uint8_t *>f[j].p)[g[j].l4 + 13] |= g[i].flags & (_TH_PSH | _TH_FIN)
            if g[i].plen < g[j].mss or g[i].flags & (_TH_PSH | _TH_FIN):
                g[j].open = 0
            continue
        if found >= 0:
            g[found].open = 0
        if g[i].ok and not (g[i].flags & (_TH_PSH | _TH_FIN)):
            g[i].open = 1
            g[i].mss = g[i].plen
            g[i].next_seq = g[i].seq + g[i].plen
    for i in range(n):
        if f[i].segs > 1:
            _finish(&f[i], &g[i])
    return merged
