# libc / POSIX declarations used by netfo/_fastpath.pyx.

from libc.stdint cimport uint16_t, uint32_t


cdef extern from "<unistd.h>" nogil:
    ssize_t read(int fd, void *buf, size_t count)
    ssize_t pread(int fd, void *buf, size_t count, long offset)
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
    int SOL_PACKET          # glibc's <bits/socket.h>; the kernel's UAPI has none

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

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    short POLLIN, POLLOUT

cdef extern from "<sys/ioctl.h>" nogil:
    int ioctl(int fd, unsigned long req, ...)

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK, EFD_CLOEXEC

cdef extern from "<net/if.h>" nogil:
    struct ifreq:
        char ifr_name[16]
        int ifr_ifindex
        short ifr_flags
    int IFF_UP, IFF_RUNNING

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int CLOCK_MONOTONIC

cdef extern from "<fcntl.h>" nogil:
    int open(const char *path, int flags)
    int O_RDONLY, O_CLOEXEC

cdef extern from "<sys/timerfd.h>" nogil:
    struct itimerspec:
        timespec it_interval
        timespec it_value
    int timerfd_create(int clk, int flags)
    int timerfd_settime(int fd, int flags, const itimerspec *new, itimerspec *old)
    int TFD_NONBLOCK, TFD_CLOEXEC

cdef extern from "<arpa/inet.h>" nogil:
    uint16_t htons(uint16_t)
