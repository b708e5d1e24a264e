/* io_uring for the TAP side of netfo's loop (netfo/_fastpath.pyx, --tap-io).
 *
 * Reader: one multishot read (IORING_OP_READ_MULTISHOT, Linux 6.7) on the
 * TAP fd into a ring of provided buffers. The kernel keeps reading frames
 * (one CQE per frame) in our task's context while the loop is busy, so
 * the loop pays no read() system call per frame: it reaps CQEs from
 * shared memory, sends them, and gives the buffers back.
 *
 * Writer: one write SQE per frame of a receive batch and one
 * io_uring_enter for the whole batch, waiting for every completion so the
 * frames' buffers may be reused as soon as it returns.
 *
 * No allocation after tr_init_*; nothing here takes a lock or the GIL.
 */
#ifndef NETFO_TAPRING_H
#define NETFO_TAPRING_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <liburing.h>

/* Values from the kernel's include/uapi/linux/io_uring.h that Debian 12's
 * headers (liburing 2.3, Linux 6.1) predate:
 *   enum io_uring_op: IORING_OP_READ_MULTISHOT follows IORING_OP_SENDMSG_ZC
 *   (48) since Linux 6.7. */
#define NETFO_IORING_OP_READ_MULTISHOT 49
/* Stable since 5.19/6.0 and present in liburing 2.3, repeated here so a
 * build against older headers fails loudly rather than silently. */
#ifndef IORING_CQE_F_MORE
#error "liburing too old: IORING_CQE_F_MORE (Linux 5.19 uapi) missing"
#endif

#define TR_NBUF 64              /* provided buffers: a power of two */
#define TR_BGID 0x6e66          /* buffer group id ("nf") */
#define TR_UD_READ 1            /* user_data of the multishot read */
#define TR_UD_CANCEL 2          /* ... of its cancellation */
#define TR_UD_WRITE 0x10000     /* ... of write i: TR_UD_WRITE + i */

struct tapring {
    struct io_uring ring;
    int up;                     /* ring initialised */
    int fd;                     /* the TAP */
    /* reader */
    struct io_uring_buf_ring *br;
    size_t br_size;
    char *bufs;
    unsigned bufsz;
    int armed;                  /* the multishot read is in flight */
    int err;                    /* errno that ended it (0: none) */
    unsigned short held[TR_NBUF];   /* buffer ids reaped, not yet given back */
    int nheld;
};

static inline void tr_zero(struct tapring *t)
{
    memset(t, 0, sizeof(*t));
    t->fd = -1;
}

/* 0 if this kernel has io_uring, IORING_OP_READ_MULTISHOT and provided
 * buffer rings (asked with IORING_REGISTER_PROBE), else a positive errno:
 * ENOSYS (no io_uring, or disabled: kernel.io_uring_disabled), EOPNOTSUPP
 * (too old for multishot reads). */
static inline int tr_probe(void)
{
    struct io_uring ring;
    struct io_uring_probe *p;
    int r, ok;

    r = io_uring_queue_init(2, &ring, 0);
    if (r < 0)
        return -r == EPERM || -r == ENOSYS ? ENOSYS : -r;
    p = io_uring_get_probe_ring(&ring);
    ok = p != NULL && io_uring_opcode_supported(p, NETFO_IORING_OP_READ_MULTISHOT);
    if (p)
        io_uring_free_probe(p);
    io_uring_queue_exit(&ring);
    return ok ? 0 : EOPNOTSUPP;
}

static inline int tr_setup(struct tapring *t, int fd, unsigned entries, unsigned cq_entries)
{
    struct io_uring_params p;
    int r;

    memset(&p, 0, sizeof(p));
    /* Completions of polled reads are task work in the loop's thread: run
     * it at the loop's next system call instead of interrupting it with an
     * IPI (a sleeping loop is still woken). */
    p.flags = IORING_SETUP_COOP_TASKRUN;
    if (cq_entries) {
        p.flags |= IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
    }
    r = io_uring_queue_init_params(entries, &t->ring, &p);
    if (r == -EINVAL) {         /* before 5.19: no COOP_TASKRUN */
        p.flags &= ~IORING_SETUP_COOP_TASKRUN;
        r = io_uring_queue_init_params(entries, &t->ring, &p);
    }
    if (r < 0)
        return -r;
    t->up = 1;
    t->fd = fd;
    return 0;
}

static inline void tr_free(struct tapring *t)
{
    if (t->up) {
        if (t->br)
            io_uring_unregister_buf_ring(&t->ring, TR_BGID);
        io_uring_queue_exit(&t->ring);    /* cancels what is in flight */
    }
    if (t->br)
        munmap(t->br, t->br_size);
    free(t->bufs);
    tr_zero(t);
}

/* The reader: a ring with TR_NBUF buffers of bufsz bytes. 0 or an errno. */
static inline int tr_init_reader(struct tapring *t, int fd, unsigned bufsz)
{
    struct io_uring_buf_reg reg;
    int r, i;

    tr_zero(t);
    /* Room for a CQE per buffer and then some: a CQE the multishot read
     * cannot post ends it. */
    r = tr_setup(t, fd, 4, 4 * TR_NBUF);
    if (r)
        return r;
    t->bufsz = bufsz;
    t->bufs = malloc((size_t)TR_NBUF * bufsz);
    t->br_size = TR_NBUF * sizeof(struct io_uring_buf);
    t->br = mmap(NULL, t->br_size, PROT_READ | PROT_WRITE,
                 MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (t->br == MAP_FAILED)
        t->br = NULL;
    if (t->bufs == NULL || t->br == NULL) {
        tr_free(t);
        return ENOMEM;
    }
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)t->br;
    reg.ring_entries = TR_NBUF;
    reg.bgid = TR_BGID;
    r = io_uring_register_buf_ring(&t->ring, &reg, 0);
    if (r < 0) {
        munmap(t->br, t->br_size);
        t->br = NULL;
        tr_free(t);
        return -r;
    }
    io_uring_buf_ring_init(t->br);
    for (i = 0; i < TR_NBUF; i++)
        io_uring_buf_ring_add(t->br, t->bufs + (size_t)i * bufsz, bufsz, i,
                              io_uring_buf_ring_mask(TR_NBUF), i);
    io_uring_buf_ring_advance(t->br, TR_NBUF);
    return 0;
}

/* The writer: room for a batch of `batch` writes. 0 or an errno. */
static inline int tr_init_writer(struct tapring *t, int fd, unsigned batch)
{
    tr_zero(t);
    return tr_setup(t, fd, batch, 0);
}

/* The fd whose readability means CQEs wait (the loop's epoll watches it). */
static inline int tr_fd(struct tapring *t)
{
    return t->ring.ring_fd;
}

/* (Re)start the multishot read, from the thread that will reap it: its
 * reads run as that thread's task work. 0 or an errno. */
static inline int tr_arm(struct tapring *t)
{
    struct io_uring_sqe *sqe;
    int r;

    if (t->armed)
        return 0;
    sqe = io_uring_get_sqe(&t->ring);
    if (sqe == NULL)
        return EBUSY;
    /* liburing 2.3 has no io_uring_prep_read_multishot: a read with no
     * address and no length, the buffer picked from group TR_BGID. */
    io_uring_prep_rw(NETFO_IORING_OP_READ_MULTISHOT, sqe, t->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = TR_BGID;
    io_uring_sqe_set_data64(sqe, TR_UD_READ);
    r = io_uring_submit(&t->ring);
    if (r < 0)
        return -r;
    t->armed = 1;
    t->err = 0;
    return 0;
}

/* Up to max frames read: iov[i] points into a provided buffer, held until
 * tr_release(). A frame of length 0 or less than a header is returned as
 * is (the caller counts it). Sets t->armed = 0 when the read ended (t->err:
 * its errno, 0 for ENOBUFS/ECANCELED, which are ours to recover from). */
static inline int tr_reap(struct tapring *t, struct iovec *iov, int max)
{
    struct io_uring_cqe *cqe;
    int n = 0;
    unsigned bid;

    while (n < max && t->nheld < TR_NBUF && io_uring_peek_cqe(&t->ring, &cqe) == 0) {
        if (cqe->user_data == TR_UD_READ) {
            if (cqe->flags & IORING_CQE_F_BUFFER) {
                bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                t->held[t->nheld++] = (unsigned short)bid;
                if (cqe->res >= 0) {
                    iov[n].iov_base = t->bufs + (size_t)bid * t->bufsz;
                    iov[n].iov_len = (size_t)cqe->res;
                    n++;
                }
            }
            if (!(cqe->flags & IORING_CQE_F_MORE)) {
                t->armed = 0;
                if (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED)
                    t->err = -cqe->res;
            }
        }
        io_uring_cqe_seen(&t->ring, cqe);
    }
    return n;
}

/* Give the reaped buffers back to the kernel. */
static inline void tr_release(struct tapring *t)
{
    int i, mask = io_uring_buf_ring_mask(TR_NBUF);
    for (i = 0; i < t->nheld; i++)
        io_uring_buf_ring_add(t->br, t->bufs + (size_t)t->held[i] * t->bufsz,
                              t->bufsz, t->held[i], mask, i);
    io_uring_buf_ring_advance(t->br, t->nheld);
    t->nheld = 0;
}

/* Ask the multishot read to end (the loop stops): its last CQEs still
 * come and must be reaped until t->armed is 0. */
static inline void tr_cancel(struct tapring *t)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
    if (sqe == NULL)
        return;
    io_uring_prep_cancel64(sqe, TR_UD_READ, 0);
    io_uring_sqe_set_data64(sqe, TR_UD_CANCEL);
    io_uring_submit(&t->ring);
}

/* Wait at most 100 ms for a CQE (after tr_cancel). */
static inline int tr_wait(struct tapring *t)
{
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts = {0, 100000000};
    return io_uring_wait_cqe_timeout(&t->ring, &cqe, &ts);
}

/* Queue write i of a batch; 0, or -1 if the SQ is full. */
static inline int tr_write(struct tapring *t, int i, const void *buf, unsigned len)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
    if (sqe == NULL)
        return -1;
    io_uring_prep_write(sqe, t->fd, buf, len, 0);
    io_uring_sqe_set_data64(sqe, TR_UD_WRITE + i);
    return 0;
}

/* Submit the n queued writes in one io_uring_enter and wait for all of
 * them; res[i] gets write i's result (bytes or -errno). 0 or an errno of
 * io_uring_enter itself (then res[] holds -EIO for writes not reaped). */
static inline int tr_flush(struct tapring *t, int n, int *res)
{
    struct io_uring_cqe *cqe;
    int r, i, got = 0;
    unsigned long long ud;

    for (i = 0; i < n; i++)
        res[i] = -EIO;
    r = io_uring_submit_and_wait(&t->ring, n);
    while (r == -EINTR)
        r = io_uring_submit_and_wait(&t->ring, n);
    if (r < 0)
        return -r;
    while (got < n) {
        if (io_uring_peek_cqe(&t->ring, &cqe) != 0) {
            r = io_uring_wait_cqe(&t->ring, &cqe);
            if (r == -EINTR)
                continue;
            if (r < 0)
                return -r;
        }
        ud = cqe->user_data;
        if (ud >= TR_UD_WRITE && ud < TR_UD_WRITE + (unsigned)n)
            res[ud - TR_UD_WRITE] = cqe->res;
        io_uring_cqe_seen(&t->ring, cqe);
        got++;
    }
    return 0;
}

#endif
