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


def test_the_store_and_its_wal_are_private_even_when_made_by_hand(tmp_path):
    import os
    import stat
    path = tmp_path / "cems.sqlite"
    store = Store(str(path))
    store.save_mirror_rule("c1", "", 100)  # a write: the WAL exists
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in tmp_path.iterdir()}
    assert modes["cems.sqlite"] == 0o600 and modes.get("cems.sqlite-wal", 0o600) == 0o600
    store.close()
    os.chmod(path, 0o644)
    Store(str(path)).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_tls_key_others_can_read_is_refused_with_the_fix(tmp_path):
    import os
    from controller.config import parse_config
    from controller.main import check_tls
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    key.write_text("x")
    cert.write_text("x")
    os.chmod(key, 0o644)
    config = parse_config({"grpc": {"tls_cert": str(cert), "tls_key": str(key)}})
    with pytest.raises(ValueError, match="chmod 600"):
        check_tls(config)
