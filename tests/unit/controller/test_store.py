import sqlite3

import pytest

from controller.network.topology import HostInfo
from controller.store import Store, StoreError


def test_hosts_survive_reopening(store_where):
    path = store_where
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


def test_what_else_the_store_keeps_reads_back_the_same_on_both_engines(store_where):
    store = Store(store_where)
    for t, up in ((1.0, True), (5.0, False), (5.0, True), (9.0, False)):
        store.record_availability(7, 2, up, t)    # two events at 5.0: kept in their order
    assert store.availability_events(7, 2, 8.0) == [(1.0, True), (5.0, False), (5.0, True)]
    store.save_mirror_rule("c1", "voice", 50)
    store.save_mirror_rule("c1", "voice", 25)
    assert store.mirror_rules() == [("c1", "voice", 25)]
    assert store.delete_mirror_rule("c1", "voice") and not store.delete_mirror_rule("c1", "x")
    store.save_meter_readings([(1, 65536, 100.0, 10, 1000, 1, 100),
                               (1, 65536, 200.0, 20, 2000, 2, 200)])
    assert store.meter_reading(1, 65536, 150.0) == (100.0, 10, 1000, 1, 100)
    assert store.meter_reading(1, 65536, 50.0) == (100.0, 10, 1000, 1, 100)
    assert (1 << 63) - 1 == store.query("SELECT ? + 0", ((1 << 63) - 1,))[0][0]
    store.close()


def test_postgresql_newer_schema_and_errors_say_where_without_the_password(pg_where):
    import psycopg
    from controller.store import _MIGRATIONS
    postgres_url = pg_where
    store = Store(postgres_url)
    store.close()
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE cems_schema SET version = 99")
    try:
        with pytest.raises(StoreError, match="schema version 99"):
            Store(postgres_url)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute("UPDATE cems_schema SET version = %s", (len(_MIGRATIONS),))
    wrong = postgres_url.replace("postgres@", "postgres:secret@").rsplit(":", 1)[0] + ":1/cems"
    with pytest.raises(StoreError, match="cannot open store postgresql://postgres:\\*\\*\\*@") \
            as err:
        Store(wrong)
    assert "secret" not in str(err.value)


def test_postgresql_instances_migrate_and_write_one_at_a_time(pg_where):
    """Several controllers starting on one database migrate it once; their writes (each
    one transaction under one advisory lock) interleave without losing any."""
    import threading
    store_where = pg_where
    stores, errors = [], []

    def start():
        try:
            stores.append(Store(store_where))
        except Exception as err:  # pylint: disable=broad-except
            errors.append(err)
    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and len(stores) == 4

    def count_up(store):
        for _ in range(25):
            with store.transaction() as db:
                (n,) = db.execute("SELECT COALESCE(MAX(sample_percent), 0) FROM mirror_rules "
                                  "WHERE customer_id = 'counter'").fetchone()
                db.execute("DELETE FROM mirror_rules WHERE customer_id = 'counter'")
                db.execute("INSERT INTO mirror_rules VALUES ('counter', '', ?)", (n + 1,))
    threads = [threading.Thread(target=count_up, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert stores[0].mirror_rules() == [("counter", "", 100)]   # 4 x 25, none lost
    for store in stores:
        store.close()


def test_postgresql_a_broken_connection_is_made_again(pg_where):
    import psycopg
    store_where = pg_where
    store = Store(store_where)
    (pid,) = store.query("SELECT pg_backend_pid()")[0]
    with psycopg.connect(store_where, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        store.save_mirror_rule("c1", "", 100)     # the request that met the break fails
    store.save_mirror_rule("c1", "", 100)         # the next one reconnects
    assert store.mirror_rules() == [("c1", "", 100)]
    store.close()


def test_postgresql_a_change_made_through_one_instance_reaches_the_others(pg_where):
    """Two instances on one database: what A commits reaches B's listener (and not A's own),
    a rolled-back change reaches nobody, and after B's listening connection was killed, B
    re-reads everyone, deletions included."""
    import queue
    import time

    import psycopg

    from controller.csm.model import ClassBounds, Customer, ServiceClass, Sla, Sls
    from controller.csm.rules import Refused, initial_sls
    from controller.csm.store import CsmStore
    a, b = CsmStore(Store(pg_where)), CsmStore(Store(pg_where))
    heard_a, heard_b = queue.Queue(), queue.Queue()
    a.watch_other_instances(lambda c, s: heard_a.put((c, s)))
    b.watch_other_instances(lambda c, s: heard_b.put((c, s)))
    (listener,) = b.store._listeners   # pylint: disable=protected-access
    deadline = time.time() + 10
    while time.time() < deadline and b.store.query(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%' AND "
            "state = 'idle'")[0][0] < 2:     # both instances listening
        time.sleep(0.05)

    def sla_of(customer_id):
        return Sla(customer_id, "gsb-business", {ServiceClass.GOLD: ClassBounds(1, 10 ** 7),
                                                 ServiceClass.SILVER: ClassBounds(1, 10 ** 7)})
    for customer_id in ("alice", "bob"):
        a.create_customer(Customer(customer_id, customer_id), sla_of(customer_id),
                          initial_sls(sla_of(customer_id), 0.0), lambda committed: None)
    assert [heard_b.get(timeout=5)[0] for _ in range(2)] == ["alice", "bob"]
    a.change_sls("alice", lambda sla, last: Sls("alice", ServiceClass.GOLD, 5_000_000, 1.0))
    customer_id, state = heard_b.get(timeout=5)
    assert (customer_id, state.sls.service_class, state.sls.rate_bps) == \
        ("alice", ServiceClass.GOLD, 5_000_000)

    def refuse(sla, last):
        raise Refused("RESOURCE_EXHAUSTED", "too soon")
    with pytest.raises(Refused):
        a.change_sls("alice", refuse)      # rolled back: nobody hears of it
    a.delete_customer("bob")
    assert heard_b.get(timeout=5) == ("bob", None)
    assert heard_a.empty() and heard_b.empty()

    # B's listening connection dies; meanwhile A deletes alice and creates carol
    assert b.store.listening_problem == ""
    with psycopg.connect(pg_where, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query "
                      "LIKE 'LISTEN%%'")
        deadline = time.time() + 5
        while time.time() < deadline and not b.store.listening_problem:
            time.sleep(0.02)
        assert "not hearing the changes (cems_customers)" in b.store.listening_problem
        a.delete_customer("alice")
        a.create_customer(Customer("carol", "carol"), sla_of("carol"),
                          initial_sls(sla_of("carol"), 0.0), lambda committed: None)
    heard = {}
    deadline = time.time() + 15
    while time.time() < deadline and set(heard) != {"alice", "carol"}:
        try:
            customer_id, state = heard_b.get(timeout=1)
        except queue.Empty:
            continue
        heard[customer_id] = state
    assert heard["alice"] is None and heard["carol"].customer.customer_id == "carol"
    assert b.store.listening_problem == ""     # heard again: health is whole
    assert listener.is_alive()
    a.store.close()
    b.store.close()
    assert not listener.is_alive()


def test_postgresql_mirror_rules_set_through_one_instance_reach_the_others(pg_where):
    import time

    from controller.monitor.mirror import MirrorRule
    from controller.monitor.mirror_rules import MirrorRules
    from controller.store import MIRROR_CHANNEL
    from controller.csm.model import ClassBounds, Customer, ServiceClass, Sla
    from controller.csm.rules import initial_sls
    from controller.csm.store import CsmStore
    a, b = Store(pg_where), Store(pg_where)
    sla = Sla("c1", "gsb-business", {ServiceClass.SILVER: ClassBounds(1, 10 ** 7)})
    CsmStore(a).create_customer(Customer("c1", "c1"), sla, initial_sls(sla, 0.0),
                                lambda committed: None)
    rules_a, rules_b = MirrorRules(a, probe=(1, 9)), MirrorRules(b, probe=(1, 9))
    heard = []
    rules_b.listeners.append(heard.append)
    b.listen(MIRROR_CHANNEL, lambda _: rules_b.reload(),
             lambda missed: rules_b.reload() if missed else None)
    time.sleep(0.5)   # B listening
    rules_a.set(MirrorRule("c1", "voice", 50))
    deadline = time.time() + 5
    while time.time() < deadline and not heard:
        time.sleep(0.02)
    assert [r.key for r in rules_b.rules()] == [("c1", "voice")] and len(heard) == 1
    rules_a.remove("c1", "voice")
    deadline = time.time() + 5
    while time.time() < deadline and len(heard) < 2:
        time.sleep(0.02)
    assert rules_b.rules() == () and not rules_b.reload()   # nothing more to learn
    a.close()
    b.close()
