"""SQLite persistence of what the controller must remember across restarts (shell).

Learned hosts (so that a restarted controller computes the same desired flows and
reconciliation leaves forwarding untouched) and the customer service management tables
(controller/csm/store.py). WAL mode; the schema is versioned and migrated forward in order
(user_version); writes go through transaction().
"""

import contextlib
import os
import sqlite3
import threading

from controller.network.topology import HostInfo

_MIGRATIONS = (
    # 1: hosts learned from traffic
    """
    CREATE TABLE hosts (
        mac TEXT PRIMARY KEY,
        dpid INTEGER NOT NULL,
        port_no INTEGER NOT NULL,
        ipv4 TEXT NOT NULL DEFAULT '',
        updated_unix_s REAL NOT NULL
    );
    """,
    # 2: customer service management (SLA, SLS history, tokens, audit)
    """
    CREATE TABLE customers (
        customer_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        segment TEXT NOT NULL,
        vip INTEGER NOT NULL,
        access_dpid INTEGER NOT NULL,
        access_port INTEGER NOT NULL,
        hosts TEXT NOT NULL,
        idx INTEGER NOT NULL UNIQUE
    );
    CREATE INDEX customers_access ON customers (access_dpid);
    CREATE TABLE slas (
        customer_id TEXT PRIMARY KEY REFERENCES customers (customer_id) ON DELETE CASCADE,
        variant TEXT NOT NULL,
        bounds TEXT NOT NULL,
        availability_target REAL NOT NULL,
        min_change_interval_s REAL NOT NULL,
        committed_bps INTEGER NOT NULL
    );
    CREATE TABLE sls_history (
        customer_id TEXT NOT NULL REFERENCES customers (customer_id) ON DELETE CASCADE,
        changed_unix_s REAL NOT NULL,
        service_class TEXT NOT NULL,
        rate_bps INTEGER NOT NULL,
        source TEXT NOT NULL
    );
    CREATE INDEX sls_history_customer ON sls_history (customer_id, changed_unix_s);
    CREATE TABLE tokens (
        token_id TEXT PRIMARY KEY,
        token_sha256 TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        created_unix_s REAL NOT NULL
    );
    CREATE TABLE audit (
        time_unix_s REAL NOT NULL,
        principal TEXT NOT NULL,
        action TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    """,
    # 3: switch and port up/down times, for availability in customer reports
    """
    CREATE TABLE availability_events (
        dpid INTEGER NOT NULL,
        port_no INTEGER NOT NULL,
        up INTEGER NOT NULL,
        time_unix_s REAL NOT NULL
    );
    CREATE INDEX availability_events_place ON availability_events (dpid, port_no, time_unix_s);
    """,
    # 4: mirroring to the probe set over gRPC (the config file's rules are not stored)
    """
    CREATE TABLE mirror_rules (
        customer_id TEXT NOT NULL,
        service TEXT NOT NULL,
        sample_percent INTEGER NOT NULL,
        PRIMARY KEY (customer_id, service)
    );
    """,
    # 5: tokens of probes (their probe id) and tokens that expire
    """
    ALTER TABLE tokens ADD COLUMN probe_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE tokens ADD COLUMN expires_unix_s REAL;
    """,
    # 6: a daily reading of each cems meter's counters, for reports over a period
    """
    CREATE TABLE meter_readings (
        dpid INTEGER NOT NULL,
        meter_id INTEGER NOT NULL,
        time_unix_s REAL NOT NULL,
        packets_in INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        packets_dropped INTEGER NOT NULL,
        bytes_dropped INTEGER NOT NULL
    );
    CREATE INDEX meter_readings_meter ON meter_readings (dpid, meter_id, time_unix_s);
    """,
    # 7: the policy engine's decision log and its memory (the actions in force), so that a
    # restart neither forgets what was decided nor takes back what was done
    """
    CREATE TABLE policy_decisions (
        seq INTEGER PRIMARY KEY,
        time_unix_s REAL NOT NULL,
        kind TEXT NOT NULL,
        element TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        for_customers TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX policy_decisions_time ON policy_decisions (time_unix_s);
    CREATE TABLE policy_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        memory TEXT NOT NULL,
        mode TEXT NOT NULL DEFAULT '',
        mode_set_by TEXT NOT NULL DEFAULT '',
        saved_unix_s REAL NOT NULL
    );
    """,
)


def _private(path: str) -> None:
    """The store holds token hashes and customers' data: readable by its owner only. SQLite
    gives its -wal and -shm files the database file's permissions."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise StoreError(f"cannot open store {path}: {err.strerror}") from None
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)  # an older store, or one made by hand: tighten it
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.chmod(path + suffix, 0o600)


class StoreError(RuntimeError):
    """The store could not be opened or written; the message says which file and why."""


class Store:
    """The controller's SQLite database. Methods are safe to call from any thread."""

    def __init__(self, path: str):
        self.path = path
        if path != ":memory:":
            directory = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as err:
                raise StoreError(f"cannot create directory {directory} for store {path}: {err}")
            _private(path)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._lock = threading.Lock()
            self._migrate()
        except sqlite3.Error as err:
            raise StoreError(f"cannot open store {path}: {err}") from None

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            raise StoreError(f"store {self.path} has schema version {version}, newer than this "
                             f"cems knows ({len(_MIGRATIONS)}); upgrade cems or use another file")
        for number, sql in enumerate(_MIGRATIONS[version:], start=version + 1):
            with self.transaction() as db:
                for statement in sql.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={number}")

    @contextlib.contextmanager
    def transaction(self):
        """One write transaction (BEGIN IMMEDIATE): commits on success, rolls back on any
        exception, so a failed request leaves nothing half-written."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def reading(self):
        """The connection for reads that need not be atomic with a write."""
        with self._lock:
            yield self._db

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of a read-only query."""
        with self.reading() as db:
            return db.execute(sql, params).fetchall()

    def record_availability(self, dpid: int, port_no: int, up: bool, now_unix_s: float) -> None:
        """A switch (port_no 0) or port went up or down."""
        with self.transaction() as db:
            db.execute("INSERT INTO availability_events VALUES (?,?,?,?)",
                       (dpid, port_no, int(up), now_unix_s))

    def availability_events(self, dpid: int, port_no: int, end_unix_s: float
                            ) -> list[tuple[float, bool]]:
        """(time, up) of a switch (port_no 0) or port until end, oldest first."""
        return [(t, bool(up)) for t, up in self.query(
            "SELECT time_unix_s, up FROM availability_events WHERE dpid=? AND port_no=? AND "
            "time_unix_s < ? ORDER BY time_unix_s, rowid", (dpid, port_no, end_unix_s))]

    def save_host(self, host: HostInfo, now_unix_s: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO hosts (mac, dpid, port_no, ipv4, updated_unix_s) VALUES (?,?,?,?,?) "
                "ON CONFLICT(mac) DO UPDATE SET dpid=excluded.dpid, port_no=excluded.port_no, "
                "ipv4=excluded.ipv4, updated_unix_s=excluded.updated_unix_s",
                (host.mac, host.dpid, host.port_no, ",".join(host.ipv4), now_unix_s))

    def save_meter_readings(self, readings) -> None:
        """(dpid, meter_id, time, packets_in, bytes_in, packets_dropped, bytes_dropped) rows;
        readings older than 400 days go."""
        readings = list(readings)
        if not readings:
            return
        with self.transaction() as db:
            db.executemany("INSERT INTO meter_readings VALUES (?,?,?,?,?,?,?)", readings)
            db.execute("DELETE FROM meter_readings WHERE time_unix_s < ?",
                       (readings[0][2] - 400 * 86_400,))

    def meter_reading(self, dpid: int, meter_id: int, at_unix_s: float) -> tuple | None:
        """The reading of a meter last taken at or before `at_unix_s`, else the first one
        after it: (time, packets_in, bytes_in, packets_dropped, bytes_dropped), or None."""
        rows = self.query("SELECT time_unix_s, packets_in, bytes_in, packets_dropped, "
                          "bytes_dropped FROM meter_readings WHERE dpid=? AND meter_id=? AND "
                          "time_unix_s <= ? ORDER BY time_unix_s DESC LIMIT 1",
                          (dpid, meter_id, at_unix_s))
        if not rows:
            rows = self.query("SELECT time_unix_s, packets_in, bytes_in, packets_dropped, "
                              "bytes_dropped FROM meter_readings WHERE dpid=? AND meter_id=? "
                              "AND time_unix_s > ? ORDER BY time_unix_s LIMIT 1",
                              (dpid, meter_id, at_unix_s))
        return rows[0] if rows else None

    def delete_host(self, mac: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM hosts WHERE mac=?", (mac,))

    def load_hosts(self) -> list[HostInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT mac, dpid, port_no, ipv4 FROM hosts ORDER BY mac").fetchall()
        return [HostInfo(mac, dpid, port_no, tuple(a for a in ipv4.split(",") if a))
                for mac, dpid, port_no, ipv4 in rows]

    def customer_exists(self, customer_id: str) -> bool:
        return bool(self.query("SELECT 1 FROM customers WHERE customer_id=?", (customer_id,)))

    def save_mirror_rule(self, customer_id: str, service: str, sample_percent: int) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO mirror_rules (customer_id, service, sample_percent) "
                       "VALUES (?,?,?) ON CONFLICT(customer_id, service) DO UPDATE SET "
                       "sample_percent=excluded.sample_percent",
                       (customer_id, service, sample_percent))

    def delete_mirror_rule(self, customer_id: str, service: str) -> bool:
        with self.transaction() as db:
            return db.execute("DELETE FROM mirror_rules WHERE customer_id=? AND service=?",
                              (customer_id, service)).rowcount > 0

    def mirror_rules(self) -> list[tuple[str, str, int]]:
        return self.query("SELECT customer_id, service, sample_percent FROM mirror_rules "
                          "ORDER BY customer_id, service")

    def close(self) -> None:
        with self._lock:
            self._db.close()
