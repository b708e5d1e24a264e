# Linux UAPI declarations used by netfo/_fastpath.pyx.  The values the Python
# side repeats (netfo/kernel/packet.py, netfo/kernel/tap.py) are exported by
# the extension and checked against it (tests/unit/test_fastpath_constants.py).

from libc.stdint cimport uint8_t, uint16_t, uint32_t


cdef extern from "<linux/sockios.h>" nogil:
    int SIOCGIFNAME, SIOCGIFFLAGS

cdef extern from "<linux/netlink.h>" nogil:
    struct nlmsghdr:
        uint32_t nlmsg_len
        uint16_t nlmsg_type

cdef extern from *:
    """
    #include <linux/netlink.h>
    #define NETFO_NLMSG_HDRLEN ((int)NLMSG_HDRLEN)
    """
    enum: NLMSG_HDRLEN "NETFO_NLMSG_HDRLEN"

cdef extern from "<linux/rtnetlink.h>" nogil:
    struct ifinfomsg:
        int ifi_index
        unsigned int ifi_flags
    int RTM_NEWLINK, RTM_DELLINK

cdef extern from "<linux/if_ether.h>" nogil:
    int ETH_P_ALL

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
    int PACKET_ADD_MEMBERSHIP, PACKET_DROP_MEMBERSHIP
    int PACKET_AUXDATA, PACKET_VNET_HDR, PACKET_IGNORE_OUTGOING
    int PACKET_MR_MULTICAST, PACKET_MR_PROMISC, PACKET_MR_ALLMULTI
    int PACKET_HOST, PACKET_OTHERHOST, PACKET_OUTGOING
    int TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID

cdef extern from "<linux/virtio_net.h>" nogil:
    struct virtio_net_hdr:
        uint8_t flags
        uint8_t gso_type
        uint16_t hdr_len            # __virtio16: the fd's byte order (host order here)
        uint16_t gso_size
        uint16_t csum_start
        uint16_t csum_offset
    int VIRTIO_NET_HDR_F_NEEDS_CSUM
    int VIRTIO_NET_HDR_GSO_NONE

cdef extern from *:
    """
    #include <linux/virtio_net.h>
    #define NETFO_VNET_HDR_LEN ((int)sizeof(struct virtio_net_hdr))
    """
    # The header on both sides of the loop: TAP IFF_VNET_HDR (TUNSETVNETHDRSZ)
    # and slave PACKET_VNET_HDR.  A compile-time constant.
    enum: VNET_HDR_LEN "NETFO_VNET_HDR_LEN"

cdef extern from "<linux/if_tun.h>" nogil:
    unsigned long TUNSETIFF, TUNSETPERSIST, TUNSETOFFLOAD, TUNSETVNETHDRSZ, TUNSETCARRIER
    int IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_NO_CARRIER
    int TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN
