"""Persistence of what the controller must remember across restarts (shell): SQLite by
default, PostgreSQL when `store.url` names one (several controller instances share it).

Learned hosts (so that a restarted controller computes the same desired flows and
reconciliation leaves forwarding untouched), the customer service management tables
(controller/csm/store.py), mirror rules, meter readings and the policy engine's decisions
and memory (controller/policy_store.py). The schema is versioned and migrated forward in
order, the same migrations on both engines (SQLite's user_version; PostgreSQL's
cems_schema table, with the few additions its dialect needs in _PG_EXTRA); every write goes
through transaction(), one transaction per change. On SQLite that is BEGIN IMMEDIATE in WAL
mode; on PostgreSQL a transaction that first takes one advisory lock, so that writers of
all instances take turns exactly as SQLite's do, and no change interleaves with another.
Callers write SQLite's dialect with ? placeholders; the PostgreSQL connection translates.
"""

import contextlib
import logging
import os
import re
import secrets
import sqlite3
import threading
import time

from controller.network.topology import HostInfo

LOG = logging.getLogger("cems.store")

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


# What PostgreSQL needs beside migration N: the insertion order SQLite keeps as rowid, and
# SQLite's instr().
_PG_EXTRA = {
    2: ("ALTER TABLE sls_history ADD COLUMN rowid BIGSERIAL",
        "ALTER TABLE audit ADD COLUMN rowid BIGSERIAL",
        "CREATE OR REPLACE FUNCTION instr(text, text) RETURNS integer "
        "AS 'SELECT strpos($1, $2)' LANGUAGE SQL IMMUTABLE"),
    3: ("ALTER TABLE availability_events ADD COLUMN rowid BIGSERIAL",),
}
MIRROR_CHANNEL = "cems_mirror"   # notifications that the stored mirror rules changed
_PG_LOCK = 0x63656D73   # "cems": the advisory lock every write transaction takes


def _pg_ddl(sql: str) -> str:
    """A migration in PostgreSQL's types: 64-bit integers and doubles, as SQLite has."""
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", re.sub(r"\bINTEGER\b", "BIGINT", sql))


class _PgConnection:
    """A psycopg connection that speaks to callers as a sqlite3 connection does: execute()
    and executemany() with ? placeholders, returning a cursor (fetchone, fetchall,
    rowcount)."""

    def __init__(self, url: str):
        import psycopg  # pylint: disable=import-outside-toplevel
        self._psycopg = psycopg
        self.url = url
        self._closed = False
        self._db = self._connect()

    def _connect(self):
        from psycopg.adapt import Loader  # pylint: disable=import-outside-toplevel

        class _Number(Loader):
            """NUMERIC (what SUM() of BIGINT gives) as SQLite gives it: int or float."""
            def load(self, data):
                text = bytes(data).decode()
                return float(text) if "." in text or "e" in text.lower() else int(text)
        db = self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        db.adapters.register_loader("numeric", _Number)
        return db

    @staticmethod
    def _sql(sql: str, params) -> str:
        return sql.replace("%", "%%").replace("?", "%s") if params else sql

    def reconnect_if_broken(self) -> None:
        """A connection the server or the network broke is made again (the transaction it
        was in was rolled back by the server); one this side closed stays closed."""
        if not self._closed and (self._db.closed or self._db.broken):
            self._db = self._connect()

    def execute(self, sql: str, params=()):
        return self._db.execute(self._sql(sql, params), tuple(params) or None)

    def executemany(self, sql: str, rows):
        rows = [tuple(r) for r in rows]
        cursor = self._db.cursor()
        if rows:
            cursor.executemany(self._sql(sql, rows[0]), rows)
        return cursor

    def close(self) -> None:
        self._closed = True
        self._db.close()


def is_url(where: str) -> bool:
    return where.startswith(("postgresql://", "postgres://"))


def describe(where: str) -> str:
    """A store's address without its password, for messages."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", where)


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
    """The controller's database: a SQLite file, or the PostgreSQL server a
    postgresql:// URL names. Methods are safe to call from any thread."""

    def __init__(self, path: str):
        self.path = path
        self.engine = "postgresql" if is_url(path) else "sqlite"
        self.instance_id = secrets.token_hex(6)   # names this process in notifications
        self._listeners: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._listen_problems: dict[str, str] = {}   # channel -> why it is not heard now
        if self.engine == "postgresql":
            self._open_postgresql(path)
            return
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

    def _open_postgresql(self, url: str) -> None:
        try:
            import psycopg  # pylint: disable=import-outside-toplevel
        except ImportError:
            raise StoreError("store.url names PostgreSQL but psycopg is not installed; "
                             "scripts/setup.sh installs it") from None
        try:
            self._db = _PgConnection(url)
            self._lock = threading.Lock()
            self._migrate()
        except psycopg.Error as err:
            raise StoreError(f"cannot open store {describe(url)}: "
                             f"{str(err).strip() or type(err).__name__}") from None

    def _version(self) -> int:
        if self.engine == "sqlite":
            return self._db.execute("PRAGMA user_version").fetchone()[0]
        row = self._db.execute("SELECT version FROM cems_schema WHERE id = 1").fetchone()
        return row[0] if row else 0

    def _migrate(self) -> None:
        with self.transaction() as db:   # instances starting together migrate in turn
            if self.engine == "postgresql":
                db.execute("CREATE TABLE IF NOT EXISTS cems_schema (id BIGINT PRIMARY KEY "
                           "CHECK (id = 1), version BIGINT NOT NULL)")
            version = self._version()
        if version > len(_MIGRATIONS):
            raise StoreError(f"store {describe(self.path)} has schema version {version}, newer than this "
                             f"cems knows ({len(_MIGRATIONS)}); upgrade cems or use another file")
        for number, sql in enumerate(_MIGRATIONS[version:], start=version + 1):
            with self.transaction() as db:
                if self._version() >= number:
                    continue    # another instance migrated it meanwhile
                if self.engine == "postgresql":
                    statements = [_pg_ddl(s) for s in sql.split(";")] + \
                        list(_PG_EXTRA.get(number, ()))
                else:
                    statements = sql.split(";")
                for statement in statements:
                    if statement.strip():
                        db.execute(statement)
                if self.engine == "postgresql":
                    db.execute("INSERT INTO cems_schema (id, version) VALUES (1, ?) ON CONFLICT "
                               "(id) DO UPDATE SET version = excluded.version", (number,))
                else:
                    db.execute(f"PRAGMA user_version={number}")

    @contextlib.contextmanager
    def transaction(self):
        """One write transaction (BEGIN IMMEDIATE): commits on success, rolls back on any
        exception, so a failed request leaves nothing half-written."""
        with self._lock:
            if self.engine == "postgresql":
                self._db.reconnect_if_broken()
                self._db.execute("BEGIN")
                self._db.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
            else:
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
            if self.engine == "postgresql":
                self._db.reconnect_if_broken()
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
        with self.reading() as db:   # one statement: atomic on its own
            db.execute(
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
        with self.reading() as db:
            rows = db.execute(
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
            self.notify(db, MIRROR_CHANNEL, "rules")

    def delete_mirror_rule(self, customer_id: str, service: str) -> bool:
        with self.transaction() as db:
            deleted = db.execute("DELETE FROM mirror_rules WHERE customer_id=? AND service=?",
                                 (customer_id, service)).rowcount > 0
            self.notify(db, MIRROR_CHANNEL, "rules")
            return deleted

    def mirror_rules(self) -> list[tuple[str, str, int]]:
        return self.query("SELECT customer_id, service, sample_percent FROM mirror_rules "
                          "ORDER BY customer_id, service")

    # -- changes between instances (PostgreSQL) ------------------------------------------
    def notify(self, db, channel: str, subject: str) -> None:
        """Inside a transaction: tell the other instances on this store that `subject` changed
        (delivered when the transaction commits, never if it rolls back). SQLite has no other
        instances: nothing to do."""
        if self.engine == "postgresql":
            db.execute("SELECT pg_notify(?, ?)", (channel, f"{self.instance_id} {subject}"))

    def listen(self, channel: str, changed, resync, retry_s: float = 1.0) -> None:
        """Call `changed(subject)` for every change another instance notifies on `channel`,
        from a thread of its own with a connection of its own. Once listening, it calls
        `resync(missed)` first: `missed` is False when listening began at the first try,
        True after a connection was lost or refused (notifications sent meanwhile are gone).
        A callback that raises is logged and listening goes on. SQLite: nothing."""
        if self.engine != "postgresql":
            return
        thread = threading.Thread(target=self._listen, args=(channel, changed, resync, retry_s),
                                  name=f"cems-listen-{channel}", daemon=True)
        self._listeners.append(thread)
        thread.start()

    def _listen(self, channel, changed, resync, retry_s) -> None:
        import psycopg  # pylint: disable=import-outside-toplevel
        broken = missed = False
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.path, autocommit=True, connect_timeout=10) as db:
                    db.execute(f"LISTEN {channel}")
                    if broken:
                        LOG.warning("store %s: listening for changes again; re-reading them",
                                    describe(self.path))
                    self._call(resync, missed)
                    broken = False
                    self._listen_problems.pop(channel, None)
                    while not self._stopping.is_set():
                        for note in db.notifies(timeout=0.5):
                            sender, _, subject = note.payload.partition(" ")
                            if sender != self.instance_id:
                                self._call(changed, subject)
            except psycopg.Error as err:
                if not broken:
                    why = str(err).strip().splitlines()[0] if str(err).strip() else \
                        type(err).__name__
                    LOG.error("store %s: lost the connection that hears other instances' "
                              "changes (%s); retrying every %g s", describe(self.path), why,
                              retry_s)
                    self._listen_problems[channel] = (
                        f"not hearing the changes ({channel}) other instances make in the "
                        f"store {describe(self.path)} since {time.strftime('%H:%M:%S')} "
                        f"({why}): what they change is not applied here")
                broken = missed = True
                self._stopping.wait(retry_s)

    @property
    def listening_problem(self) -> str:
        """Why changes other instances make are not heard now ("" when they are)."""
        return "; ".join(sorted(dict(self._listen_problems).values()))

    @staticmethod
    def _call(callback, *args) -> None:
        try:
            callback(*args)
        except Exception:  # pylint: disable=broad-except
            LOG.exception("store: handling a change from another instance failed (%s)", args)

    def close(self) -> None:
        self._stopping.set()
        for thread in self._listeners:
            thread.join(5)
        with self._lock:
            self._db.close()
