"""The mirror rules in force: the config file's, plus those set over gRPC (core; the store
that keeps the gRPC ones is passed in).

Rules set over gRPC are stored (SQLite), so a restarted controller mirrors the same
traffic; the config file's rules are fixed while the controller runs and cannot be removed
over gRPC. A rule set over gRPC for the same customer and service as a config rule
replaces it (for example to change the sample share) until it is removed again.

Nobody outside changes the rules but through set() and remove(), and reload() when another
controller instance on a shared store changed the stored ones; after each change every
listener hears the rules now in force (the app turns them into a mirror plan).
"""

import threading

from controller.monitor.mirror import MirrorRule, check_rule
from controller.network.topology import SwitchPort


class MirrorRuleError(ValueError):
    """A rule cannot be set or removed; `code` is the gRPC status name to answer with."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class MirrorRules:
    def __init__(self, store, configured: tuple[MirrorRule, ...] = (),
                 probe: SwitchPort | None = None):
        """`store` keeps the rules set over gRPC and knows the customers: mirror_rules(),
        save_mirror_rule(), delete_mirror_rule() and customer_exists() of
        controller.store.Store."""
        self.store = store
        self.probe = probe
        self._configured = {rule.key: rule for rule in configured}
        self._lock = threading.Lock()
        self._api = {(c, s): MirrorRule(c, s, p, "api") for c, s, p in store.mirror_rules()}
        self.listeners: list = []  # called with the rules in force after every change
        self._zooms: dict = {}     # customer -> rule: all its traffic while zoomed in on

    def _changed(self) -> None:
        rules = self.rules()
        for listener in list(self.listeners):
            listener(rules)

    def rules(self) -> tuple[MirrorRule, ...]:
        with self._lock:
            merged = {**self._configured, **self._api, **self._zooms}
        return tuple(sorted(merged.values()))

    def zoom(self, customer_id: str, on: bool) -> bool:
        """Mirror all of a customer's traffic while it is zoomed in on (not stored: a zoom
        ends with the controller); True if that changed anything."""
        with self._lock:
            if on == (customer_id in self._zooms) or (on and self.probe is None):
                return False
            if on:
                self._zooms[customer_id] = MirrorRule(customer_id, "", 100, "zoom")
            else:
                del self._zooms[customer_id]
        self._changed()
        return True

    def set(self, rule: MirrorRule) -> MirrorRule:
        rule = MirrorRule(rule.customer_id, rule.service, rule.sample_percent, "api")
        if rule.customer_id and not self.store.customer_exists(rule.customer_id):
            raise MirrorRuleError("NOT_FOUND", f"no customer {rule.customer_id!r}")
        problem = check_rule(rule)
        if problem:
            raise MirrorRuleError("INVALID_ARGUMENT", problem)
        if self.probe is None:
            raise MirrorRuleError("FAILED_PRECONDITION", "no probe port is configured: set "
                                  "mirror.probe = \"DPID:PORT\" in the controller's config")
        with self._lock:
            self.store.save_mirror_rule(rule.customer_id, rule.service, rule.sample_percent)
            self._api[rule.key] = rule
        self._changed()
        return rule

    def reload(self) -> bool:
        """The stored rules again (another instance on a shared store changed them); True
        and the listeners told if that changed the rules in force."""
        stored = {(c, s): MirrorRule(c, s, p, "api") for c, s, p in self.store.mirror_rules()}
        with self._lock:
            if stored == self._api:
                return False
            self._api = stored
        self._changed()
        return True

    def remove(self, customer_id: str, service: str) -> None:
        key = (customer_id, service)
        with self._lock:
            removed = key in self._api
            if removed:
                self.store.delete_mirror_rule(customer_id, service)
                del self._api[key]
        if removed:
            self._changed()
            return
        if key in self._configured:
            raise MirrorRuleError("FAILED_PRECONDITION",
                                  f"{self._configured[key].describe()} is set in the config "
                                  "file; remove it there")
        raise MirrorRuleError("NOT_FOUND", f"no mirror rule for customer {customer_id!r} and "
                              f"service {service or '(all)'!r}")
