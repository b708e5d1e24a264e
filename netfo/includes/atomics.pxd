# Fields shared between the control thread and the loop(s): GCC/Clang
# __atomic builtins on plain fields (no volatile, no full barriers).
#   load_*   acquire: what the writer stored before its release is visible
#   store_*  release: what this thread stored before is visible to an acquirer
#   *_sc     sequentially consistent, only where a thread stores one field and
#            then loads another that the other thread stores (set_ready vs
#            the loop's hold): acquire/release cannot order a store before a
#            later load.
# On x86-64 acquire loads and release stores are plain movs.

from libc.stdint cimport uint64_t


cdef extern from *:
    """
    #define netfo_load(p)        __atomic_load_n((p), __ATOMIC_ACQUIRE)
    #define netfo_store(p, v)    __atomic_store_n((p), (v), __ATOMIC_RELEASE)
    #define netfo_load_sc(p)     __atomic_load_n((p), __ATOMIC_SEQ_CST)
    #define netfo_store_sc(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
    #define netfo_add(p, v)      __atomic_add_fetch((p), (v), __ATOMIC_ACQ_REL)
    #define netfo_cas(p, e, v)   ({ __typeof__(*(p)) e_ = (e); \
        __atomic_compare_exchange_n((p), &e_, (v), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE); })
    """
    int load_int "netfo_load"(const int *p) nogil
    void store_int "netfo_store"(int *p, int v) nogil
    int load_int_sc "netfo_load_sc"(const int *p) nogil
    void store_int_sc "netfo_store_sc"(int *p, int v) nogil
    int add_int "netfo_add"(int *p, int v) nogil
    uint64_t load_u64 "netfo_load"(const uint64_t *p) nogil
    void store_u64 "netfo_store"(uint64_t *p, uint64_t v) nogil
    uint64_t add_u64 "netfo_add"(uint64_t *p, uint64_t v) nogil
    bint cas_u64 "netfo_cas"(uint64_t *p, uint64_t expected, uint64_t v) nogil
