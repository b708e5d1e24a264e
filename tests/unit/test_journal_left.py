"""The journal: what a failed restore leaves, and journals of the previous
nft naming scheme (chains named after the link) still restored."""
import pytest

from netfo import journal
from netfo.errors import NetfoError


def test_slave_chain_by_ifindex_and_the_old_scheme():
    assert journal.slave_chain({"chain": "in_5", "name": "ens11"}) == "in_5"
    assert journal.slave_chain({"silenced_as": "ens11", "name": "ens11"}) == "in_ens11"


def test_finish_keeps_the_journal_and_says_what_is_left_in_one_line(monkeypatch):
    gone = []
    monkeypatch.setattr(journal, "forget", gone.append)
    j = {"ifname": "ens10", "left": ["rename the standby (index 2) back to ens10 (File exists)"]}
    with pytest.raises(NetfoError) as e:
        journal.finish(j)
    line = str(e.value)
    assert "\n" not in line and gone == []
    assert line.startswith("ens10 is not fully restored; left to do: rename the standby")
    assert line.endswith("run netfo down ens10 again")
    journal.finish({"ifname": "ens10", "left": []})
    assert gone == ["ens10"]
