# The io_uring TAP reader/writer of tapring.h (liburing; --tap-io uring).

from .system cimport iovec


cdef extern from "tapring.h" nogil:
    enum:
        TR_NBUF
    struct tapring:
        int armed
        int err
    void tr_zero(tapring *t)
    int tr_probe()
    int tr_init_reader(tapring *t, int fd, unsigned bufsz)
    int tr_init_writer(tapring *t, int fd, unsigned batch)
    void tr_free(tapring *t)
    int tr_fd(tapring *t)
    int tr_arm(tapring *t)
    int tr_reap(tapring *t, iovec *iov, int max)
    void tr_release(tapring *t)
    void tr_cancel(tapring *t)
    int tr_wait(tapring *t)
    int tr_write(tapring *t, int i, const void *buf, unsigned len)
    int tr_flush(tapring *t, int n, int *res)
