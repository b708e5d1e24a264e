"""The namespace lab: the kernel document's hypervisor setup, its CLI, the
stream tools and the live-migration demo.  Needs no compiled extension."""
from .topology import (BRIDGE, GUEST_IP4, GUEST_IP6, MAC, PEER_IP4, PEER_IP6, PF,  # noqa: F401
                       ROUTED_NET, TAP, VF_IF, VIRTIO_IF, ZERO_MAC, Lab, LabError)
