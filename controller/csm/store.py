"""Persistence of customers, SLAs, SLS history, tokens and the audit log in SQLite (shell).

Every change runs in one Store.transaction(): the rule check that needs the current state
(SLS change interval, admission) runs inside it, so two concurrent requests cannot both pass
a check that only one of them may pass, and a refused or failed request writes nothing but
its audit line.
"""

import hashlib
import itertools
import json
import secrets
import time
from typing import Callable, Iterable

from controller import validation
from controller.csm.mapping import customer_meter_id
from controller.csm.model import (ClassBounds, Customer, CustomerState, Principal, Role,
                                  ServiceClass, Sla, Sls, TokenInfo)
from controller.csm.rules import Refused, committed_bps
from controller.store import Store


AUDIT_ID_CHARS = 64
CUSTOMERS_CHANNEL = "cems_customers"   # notifications of customer changes between instances
EVERYONE = "*"                         # ... of a change to many customers at once (import)
AUDIT_DETAIL_CHARS = 500


def _bounds_json(sla: Sla) -> str:
    return json.dumps({c.value: [b.min_bps, b.max_bps] for c, b in sla.bounds.items()},
                      sort_keys=True)


def _sla_from_row(row) -> Sla:
    customer_id, variant, bounds, availability, interval = row
    return Sla(customer_id, variant,
               {ServiceClass(c): ClassBounds(lo, hi) for c, (lo, hi) in json.loads(bounds).items()},
               availability, interval)


def _customer_from_row(row) -> Customer:
    customer_id, name, segment, vip, dpid, port, hosts = row[:7]
    return Customer(customer_id, name, segment, bool(vip), dpid, port,
                    tuple(h for h in hosts.split(",") if h))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CsmStore:
    """Customer service management data on top of the controller's Store."""

    def __init__(self, store: Store):
        self.store = store

    # -- tokens -------------------------------------------------------------------------
    def create_token(self, role: Role, customer_id: str = "", now_unix_s: float | None = None,
                     probe_id: str = "", expires_unix_s: float | None = None
                     ) -> tuple[str, str]:
        """A new bearer token for a role (and customer, or probe); returns (token_id, token).

        Only the SHA-256 of the token is stored: the token is shown once, here.
        """
        if role == Role.PROBE:
            try:
                probe_id = validation.probe_id("probe_id", probe_id)
            except ValueError as err:
                raise Refused("INVALID_ARGUMENT", str(err)) from None
            customer_id = ""
        elif role != Role.DOMAIN_MANAGER and not customer_id:
            raise Refused("INVALID_ARGUMENT", f"a {role.value} token needs a customer id")
        now = time.time() if now_unix_s is None else now_unix_s
        if expires_unix_s is not None and expires_unix_s <= now:
            raise Refused("INVALID_ARGUMENT", "a token's expiry must be in the future")
        token_id = secrets.token_hex(4)
        token = f"cems_{token_id}_{secrets.token_urlsafe(24)}"
        with self.store.transaction() as db:
            if customer_id and not db.execute("SELECT 1 FROM customers WHERE customer_id=?",
                                              (customer_id,)).fetchone():
                raise Refused("NOT_FOUND", f"no customer {customer_id!r}")
            db.execute("INSERT INTO tokens (token_id, token_sha256, role, customer_id, "
                       "created_unix_s, probe_id, expires_unix_s) VALUES (?,?,?,?,?,?,?)",
                       (token_id, hash_token(token), role.value, customer_id, now, probe_id,
                        expires_unix_s))
        return token_id, token

    def principal_for(self, token: str, now_unix_s: float | None = None) -> Principal | None:
        """Who holds `token`, or None for an unknown, revoked or expired one."""
        rows = self.store.query("SELECT token_id, role, customer_id, probe_id, expires_unix_s "
                                "FROM tokens WHERE token_sha256=?", (hash_token(token),))
        if not rows:
            return None
        token_id, role, customer_id, probe_id, expires = rows[0]
        if expires is not None and (time.time() if now_unix_s is None else now_unix_s) >= expires:
            return None
        return Principal(Role(role), customer_id, token_id, probe_id)

    def probe_token(self, token_id: str) -> tuple[str, str, float | None] | None:
        """(probe id, the token's hex SHA-256, expiry) of a probe token, by its id; None for
        no such probe token. What a record signed with the token is checked against
        (controller.stream)."""
        rows = self.store.query("SELECT probe_id, token_sha256, expires_unix_s FROM tokens "
                                "WHERE token_id=? AND role=?", (token_id, Role.PROBE.value))
        return tuple(rows[0]) if rows else None

    def tokens(self) -> list[TokenInfo]:
        return [TokenInfo(t, Role(r), c, p, created, expires) for t, r, c, p, created, expires
                in self.store.query("SELECT token_id, role, customer_id, probe_id, "
                                    "created_unix_s, expires_unix_s FROM tokens "
                                    "ORDER BY created_unix_s, token_id")]

    def revoke_token(self, token_id: str) -> bool:
        with self.store.transaction() as db:
            return db.execute("DELETE FROM tokens WHERE token_id=?", (token_id,)).rowcount > 0

    # -- audit --------------------------------------------------------------------------
    def audit(self, principal: Principal | None, action: str, customer_id: str, outcome: str,
              detail: str = "", now_unix_s: float | None = None) -> None:
        who = "anonymous" if principal is None else principal.describe()
        with self.store.transaction() as db:  # bounded: a request's input is not stored whole
            db.execute("INSERT INTO audit VALUES (?,?,?,?,?,?)",
                       (time.time() if now_unix_s is None else now_unix_s, who[:160], action,
                        validation.truncated(customer_id, AUDIT_ID_CHARS),
                        outcome[:80], validation.truncated(detail, AUDIT_DETAIL_CHARS)))

    def audit_log(self, customer_id: str = "", limit: int = 100) -> list[tuple]:
        where, params = ("WHERE customer_id=?", (customer_id,)) if customer_id else ("", ())
        return self.store.query("SELECT time_unix_s, principal, action, customer_id, outcome, "
                                f"detail FROM audit {where} ORDER BY rowid DESC LIMIT ?",
                                params + (limit,))

    # -- customers and SLAs -------------------------------------------------------------
    def create_customer(self, customer: Customer, sla: Sla, first_sls: Sls,
                        admit: Callable[[dict[int, int]], None]) -> CustomerState:
        """Store a customer with its SLA and first SLS, if `admit` (given the Gold/Silver
        committed per access switch, before this one) does not raise; returns its state."""
        if not customer.customer_id == sla.customer_id == first_sls.customer_id:
            raise ValueError(f"customer {customer.customer_id!r}: its SLA and first SLS name "
                             f"{sla.customer_id!r} and {first_sls.customer_id!r}")
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM customers WHERE customer_id=?",
                          (customer.customer_id,)).fetchone():
                raise Refused("ALREADY_EXISTS", f"customer {customer.customer_id!r} exists")
            admit(self._committed_by_access(db))
            db.execute("INSERT INTO customers VALUES (?,?,?,?,?,?,?,"
                       "(SELECT COALESCE(MAX(idx), 0) + 1 FROM customers))",
                       (customer.customer_id, customer.name, customer.segment, int(customer.vip),
                        customer.access_dpid, customer.access_port, ",".join(customer.hosts)))
            self._write_sla(db, sla)
            self._write_sls(db, first_sls)
            self.store.notify(db, CUSTOMERS_CHANNEL, customer.customer_id)
            return self._state(db, customer.customer_id)

    def import_customers(self, rows: Iterable[tuple[Customer, Sla, Sls]],
                         batch: int = 50_000) -> int:
        """Bulk load of customers with their SLA and first SLS (migrations from another
        system): no admission control, which the importing operator vouches for; each batch
        is one transaction. Returns how many were stored."""
        count = 0
        rows = iter(rows)
        encoded: dict[int, tuple[str, int]] = {}  # SLAs often share their bounds: encode once

        def bounds_of(sla: Sla) -> tuple[str, int]:
            key = id(sla.bounds)
            if key not in encoded:
                encoded[key] = (_bounds_json(sla), committed_bps(sla))
            return encoded[key]

        while True:
            chunk = list(itertools.islice(rows, batch))
            if not chunk:
                return count
            with self.store.transaction() as db:
                start = db.execute("SELECT COALESCE(MAX(idx), 0) FROM customers").fetchone()[0]
                db.executemany("INSERT INTO customers VALUES (?,?,?,?,?,?,?,?)", [
                    (c.customer_id, c.name, c.segment, int(c.vip), c.access_dpid, c.access_port,
                     ",".join(c.hosts), start + i + 1) for i, (c, _, _) in enumerate(chunk)])
                db.executemany("INSERT INTO slas VALUES (?,?,?,?,?,?)", [
                    (s.customer_id, s.variant, bounds_of(s)[0], s.availability_target,
                     s.min_change_interval_s, bounds_of(s)[1]) for _, s, _ in chunk])
                db.executemany("INSERT INTO sls_history VALUES (?,?,?,?,?)", [
                    (l.customer_id, l.changed_unix_s, l.service_class.value, l.rate_bps, l.source)
                    for _, _, l in chunk])
                self.store.notify(db, CUSTOMERS_CHANNEL, EVERYONE)
            count += len(chunk)
            encoded.clear()

    def update_sla(self, sla: Sla, admit: Callable[[dict[int, int], Sla], None],
                   fix_sls: Callable[[Sla, Sls | None], Sls | None]) -> CustomerState:
        """Replace a customer's SLA if `admit(committed_by_access, old_sla)` passes; if the
        current SLS no longer fits, `fix_sls` gives the SLS to switch to (stored too).
        Returns the customer's state after it."""
        with self.store.transaction() as db:
            old = self._sla(db, sla.customer_id)
            admit(self._committed_by_access(db), old)
            db.execute("DELETE FROM slas WHERE customer_id=?", (sla.customer_id,))
            self._write_sla(db, sla)
            fixed = fix_sls(sla, self._current_sls(db, sla.customer_id))
            if fixed is not None:
                self._write_sls(db, fixed)
            self.store.notify(db, CUSTOMERS_CHANNEL, sla.customer_id)
            return self._state(db, sla.customer_id)

    def delete_customer(self, customer_id: str) -> None:
        with self.store.transaction() as db:
            if db.execute("DELETE FROM customers WHERE customer_id=?",
                          (customer_id,)).rowcount == 0:
                raise Refused("NOT_FOUND", f"no customer {customer_id!r}")
            db.execute("DELETE FROM tokens WHERE customer_id=?", (customer_id,))
            self.store.notify(db, CUSTOMERS_CHANNEL, customer_id)

    def change_sls(self, customer_id: str, decide: Callable[[Sla, float | None], Sls]
                   ) -> CustomerState:
        """Apply `decide(sla, last_customer_change_unix_s)` (which raises Refused or returns
        the new SLS) atomically against the stored state; returns the customer's state."""
        with self.store.transaction() as db:
            sla = self._sla(db, customer_id)
            last = db.execute("SELECT MAX(changed_unix_s) FROM sls_history WHERE customer_id=? "
                              "AND source='customer'", (customer_id,)).fetchone()[0]
            new = decide(sla, last)
            self._write_sls(db, new)
            self.store.notify(db, CUSTOMERS_CHANNEL, customer_id)
            return self._state(db, customer_id)

    def customer(self, customer_id: str) -> Customer:
        rows = self.store.query("SELECT * FROM customers WHERE customer_id=?", (customer_id,))
        if not rows:
            raise Refused("NOT_FOUND", f"no customer {customer_id!r}")
        return _customer_from_row(rows[0])

    def customer_state(self, customer_id: str) -> CustomerState | None:
        """One customer as all_current_sls() gives it, or None if it does not exist."""
        with self.store.reading() as db:
            try:
                return self._state(db, customer_id)
            except Refused:
                return None

    def watch_other_instances(self, changed: Callable[[str, CustomerState | None], None]
                              ) -> None:
        """Call `changed(customer_id, state or None if deleted)` for every customer change
        that another instance on this store commits (PostgreSQL; nothing on SQLite), and
        for every customer after notifications could have been missed, when the listening
        connection was lost or refused (deletions then too). At the start it only learns
        who exists: the caller has just loaded every customer (a change another instance
        commits in the milliseconds between that load and LISTEN is the one gap)."""
        known: set[str] = set()

        def one(customer_id: str) -> None:
            if customer_id == EVERYONE:
                everyone()
                return
            state = self.customer_state(customer_id)
            (known.add if state is not None else known.discard)(customer_id)
            changed(customer_id, state)

        def everyone(missed: bool = True) -> None:
            states = {s.customer.customer_id: s for s in self.all_current_sls()}
            if not missed:
                known.update(states)
                return
            for customer_id in sorted(known - states.keys()):
                changed(customer_id, None)
            for customer_id, state in sorted(states.items()):
                changed(customer_id, state)
            known.clear()
            known.update(states)
        self.store.listen(CUSTOMERS_CHANNEL, one, everyone)

    def committed_by_access(self) -> dict[int, int]:
        with self.store.reading() as db:
            return self._committed_by_access(db)

    def customers(self, offset: int = 0, limit: int = 1000) -> list[Customer]:
        return [_customer_from_row(r) for r in self.store.query(
            "SELECT * FROM customers ORDER BY customer_id LIMIT ? OFFSET ?", (limit, offset))]

    def count_customers(self) -> int:
        return self.store.query("SELECT COUNT(*) FROM customers")[0][0]

    def sla(self, customer_id: str) -> Sla:
        with self.store.reading() as db:
            return self._sla(db, customer_id)

    def current_sls(self, customer_id: str) -> Sls:
        with self.store.reading() as db:
            current = self._current_sls(db, customer_id)
        if current is None:
            raise Refused("NOT_FOUND", f"no SLS for customer {customer_id!r}")
        return current

    def sls_history(self, customer_id: str) -> list[Sls]:
        return [Sls(c, ServiceClass(k), r, t, src) for c, k, r, t, src in self.store.query(
            "SELECT customer_id, service_class, rate_bps, changed_unix_s, source FROM sls_history "
            "WHERE customer_id=? ORDER BY changed_unix_s, rowid", (customer_id,))]

    def all_current_sls(self) -> list[CustomerState]:
        """Every customer with its current SLS and its meter id (stable while it exists):
        what the mapping function turns into device configuration."""
        rows = self.store.query(
            "SELECT c.*, h.service_class, h.rate_bps, h.changed_unix_s, h.source "
            "FROM customers c JOIN sls_history h ON h.rowid = (SELECT rowid FROM sls_history "
            "WHERE customer_id = c.customer_id ORDER BY changed_unix_s DESC, rowid DESC LIMIT 1) "
            "ORDER BY c.customer_id")
        return [CustomerState(_customer_from_row(r), Sls(r[0], ServiceClass(r[8]), r[9], r[10],
                                                         r[11]), customer_meter_id(r[7]))
                for r in rows]

    def meter_reading(self, dpid: int, meter_id: int, at_unix_s: float) -> tuple | None:
        return self.store.meter_reading(dpid, meter_id, at_unix_s)

    def availability_events(self, dpid: int, port_no: int, end_unix_s: float
                            ) -> list[tuple[float, bool]]:
        """(time, up) of a switch (port_no 0) or port until end, oldest first."""
        return self.store.availability_events(dpid, port_no, end_unix_s)

    # -- inside transactions ------------------------------------------------------------
    @classmethod
    def _state(cls, db, customer_id: str) -> CustomerState:
        row = db.execute("SELECT * FROM customers WHERE customer_id=?", (customer_id,)).fetchone()
        sls = cls._current_sls(db, customer_id) if row else None
        if row is None or sls is None:
            raise Refused("NOT_FOUND", f"no customer {customer_id!r}")
        return CustomerState(_customer_from_row(row), sls, customer_meter_id(row[7]))

    @staticmethod
    def _committed_by_access(db) -> dict[int, int]:
        return dict(db.execute("SELECT c.access_dpid, SUM(s.committed_bps) FROM slas s JOIN "
                               "customers c USING (customer_id) GROUP BY c.access_dpid"))

    @staticmethod
    def _sla(db, customer_id: str) -> Sla:
        row = db.execute("SELECT customer_id, variant, bounds, availability_target, "
                         "min_change_interval_s FROM slas WHERE customer_id=?",
                         (customer_id,)).fetchone()
        if row is None:
            raise Refused("NOT_FOUND", f"no SLA for customer {customer_id!r}")
        return _sla_from_row(row)

    @staticmethod
    def _current_sls(db, customer_id: str) -> Sls | None:
        row = db.execute("SELECT customer_id, service_class, rate_bps, changed_unix_s, source FROM "
                         "sls_history WHERE customer_id=? ORDER BY changed_unix_s DESC, rowid "
                         "DESC LIMIT 1", (customer_id,)).fetchone()
        return None if row is None else Sls(row[0], ServiceClass(row[1]), *row[2:])

    @staticmethod
    def _write_sla(db, sla: Sla) -> None:
        db.execute("INSERT INTO slas VALUES (?,?,?,?,?,?)",
                   (sla.customer_id, sla.variant, _bounds_json(sla), sla.availability_target,
                    sla.min_change_interval_s, committed_bps(sla)))

    @staticmethod
    def _write_sls(db, sls: Sls) -> None:
        db.execute("INSERT INTO sls_history VALUES (?,?,?,?,?)",
                   (sls.customer_id, sls.changed_unix_s, sls.service_class.value, sls.rate_bps,
                    sls.source))
