"""The VM bench's pure parts: loss counting, the table, the module load order."""
from __future__ import annotations

from pathlib import Path

from bench.vm import events, image


def test_loss_counts_missing_sequence_numbers_once():
    got = [0, 1, 2, 2, 6, 7, 8, 9]                 # 3..5 missing, 2 twice
    r = events._loss(10, 1000, got)
    assert r["lost"] == 3 and r["longest_gap_ms"] == 3.0 and r["recovered"]


def test_loss_says_when_the_stream_never_came_back():
    r = events._loss(2000, 1000, list(range(500)))
    assert r["lost"] == 1500 and not r["recovered"]


def _result(mode, event, g2p, p2g):
    mk = lambda lost: {"lost": lost, "recovered": True}
    return {"mode": mode, "event": event, "g2p": mk(g2p), "p2g": mk(p2g)}


def test_table_gives_ranges_medians_and_ratios():
    rs = [_result("netfo", "unplug", g, p) for g, p in ((0, 4), (2, 8), (1, 6))]
    rs += [_result("kernel", "unplug", 0, p) for p in (60, 70, 62)]
    text = events.table(events.summary(rs, ("netfo", "kernel")))
    row = text.splitlines()[2]
    assert row.startswith("| unplug | 0–2 (med 1) | 4–8 (med 6) | 0 | 60–70 (med 62) |")
    assert row.endswith("| kernel 0 | 0.10× |")


def test_vf_table_splits_the_link_time_from_the_drivers_delay():
    def r(mode, up, carrier, tx):
        return {"mode": mode, "event": "mig-replug", "vf": {"up_ms": up, "carrier_ms": carrier,
                                                             "first_tx_ms": tx}}
    rs = [r("netfo", 100, 2500, 2500.4), r("netfo", 120, 2900, 2902),
          {"mode": "netfo", "event": "mig-replug", "vf": {"standby_down_ms": -150, "up_ms": 90}},
          r("kernel", 60, 2900, 3900), {"mode": "kernel", "event": "replug", "vf": {"up_ms": 70}}]
    rows = events.vf_table(rs, ("netfo", "kernel")).splitlines()
    assert "| replug: appeared → up | - | 70 (70–70) |" in rows
    assert "| replug: up → carrier | - | - |" in rows           # no carrier: no figure
    assert "| mig-replug: up → carrier | 2,590 (2,400–2,780) | 2,840 (2,840–2,840) |" in rows
    assert "| mig-replug: carrier → first frame out | 1 (0–2) | 1,000 (1,000–1,000) |" in rows
    assert "| mig-replug: appeared → up | 100 (90–120) | 60 (60–60) |" in rows


def test_load_order_puts_dependencies_first_and_skips_builtins(tmp_path: Path):
    k = image.Kernel("v", tmp_path)
    k.modules.mkdir(parents=True)
    (k.modules / "modules.dep").write_text(
        "kernel/fs/9p/9p.ko: kernel/fs/netfs/netfs.ko kernel/net/9p/9pnet.ko\n"
        "kernel/fs/netfs/netfs.ko:\n"
        "kernel/net/9p/9pnet.ko:\n"
        "kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko\n"
        "kernel/drivers/virtio/virtio.ko:\n")
    (k.modules / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    assert image.load_order(k, ("virtio_pci", "9pnet_virtio", "9p")) == [
        "kernel/drivers/virtio/virtio.ko", "kernel/net/9p/9pnet.ko",
        "kernel/net/9p/9pnet_virtio.ko", "kernel/fs/netfs/netfs.ko", "kernel/fs/9p/9p.ko"]
