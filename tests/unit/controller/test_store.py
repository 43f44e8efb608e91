import sqlite3

import pytest

from controller.network.topology import HostInfo
from controller.store import Store, StoreError


def test_hosts_survive_reopening(tmp_path):
    path = str(tmp_path / "sub" / "cems.sqlite")
    store = Store(path)
    store.save_host(HostInfo("00:00:00:00:00:01", 1, 1, ("10.0.0.1",)), 1.0)
    store.save_host(HostInfo("00:00:00:00:00:01", 2, 3, ("10.0.0.1", "10.0.0.9")), 2.0)
    store.save_host(HostInfo("00:00:00:00:00:02", 1, 2), 2.0)
    store.close()
    again = Store(path)
    assert again.load_hosts() == [HostInfo("00:00:00:00:00:01", 2, 3, ("10.0.0.1", "10.0.0.9")),
                                  HostInfo("00:00:00:00:00:02", 1, 2, ())]
    again.close()


def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    path = str(tmp_path / "cems.sqlite")
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)


def test_unwritable_location_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot"):
        Store(str(blocker / "cems.sqlite"))
