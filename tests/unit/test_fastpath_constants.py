"""The compiled loop and the Python side agree on every value both use.

netfo/kernel/packet.py and netfo/kernel/tap.py are the Python single sources
(`import netfo` and the lab must work without the extension); the extension
takes its values from the C headers it was compiled with and exports them.
"""
import pytest

from netfo.kernel import packet, tap

try:
    from netfo import _fastpath
except ImportError as e:        # pragma: no cover - a build without the extension
    pytest.skip(f"netfo._fastpath is not built ({e})", allow_module_level=True)

PACKET = ["SOL_PACKET", "ETH_P_ALL", "PACKET_ADD_MEMBERSHIP", "PACKET_DROP_MEMBERSHIP",
          "PACKET_AUXDATA", "PACKET_VNET_HDR", "PACKET_IGNORE_OUTGOING",
          "PACKET_MR_MULTICAST", "PACKET_MR_PROMISC", "PACKET_MR_ALLMULTI"]
TAP = ["VNET_HDR_LEN", "BUFSZ", "TUNSETIFF", "TUNSETPERSIST", "TUNSETOFFLOAD",
       "TUNSETVNETHDRSZ", "TUNSETCARRIER", "IFF_TAP", "IFF_NO_PI", "IFF_VNET_HDR",
       "IFF_NO_CARRIER", "TUN_F_CSUM", "TUN_F_TSO4", "TUN_F_TSO6", "TUN_F_TSO_ECN"]


@pytest.mark.parametrize("module, name", [(packet, n) for n in PACKET] + [(tap, n) for n in TAP])
def test_python_and_c_agree(module, name):
    assert getattr(module, name) == getattr(_fastpath, name), \
        f"{module.__name__}.{name} differs from the C headers' value"


def test_vnet_header_is_the_kernel_struct():
    assert _fastpath.VNET_HDR_LEN == 10         # struct virtio_net_hdr, not the mrg_rxbuf one


def test_buffer_holds_a_whole_gso_frame():
    assert _fastpath.BUFSZ >= _fastpath.VNET_HDR_LEN + 65535 + 14 + 4
