"""netfo's benchmark suite (issue 4): not part of the product.

* ``python3 -m bench``: the lab benchmark - netfo against the direct path,
  the in-kernel tc mirred path, Open vSwitch's userspace datapath and a
  pure-Python reference forwarder, on the same namespace lab, in one run.
* ``python3 -m pytest bench/test_micro.py --benchmark-only``: the forwarding
  loop alone, frames per second, netfo's Datapath next to the reference.
"""
