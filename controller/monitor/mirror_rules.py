"""The mirror rules in force: the config file's, plus those set over gRPC (core; the store
that keeps the gRPC ones is passed in).

Rules set over gRPC are stored (SQLite), so a restarted controller mirrors the same
traffic; the config file's rules are fixed while the controller runs and cannot be removed
over gRPC. A rule set over gRPC for the same customer and service as a config rule
replaces it (for example to change the sample share) until it is removed again.
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
        """`store` keeps the rules set over gRPC: mirror_rules(), save_mirror_rule() and
        delete_mirror_rule() of controller.store.Store."""
        self.store = store
        self.probe = probe
        self._configured = {rule.key: rule for rule in configured}
        self._lock = threading.Lock()
        self._api = {(c, s): MirrorRule(c, s, p, "api") for c, s, p in store.mirror_rules()}

    def rules(self) -> tuple[MirrorRule, ...]:
        with self._lock:
            merged = {**self._configured, **self._api}
        return tuple(sorted(merged.values()))

    def set(self, rule: MirrorRule) -> MirrorRule:
        rule = MirrorRule(rule.customer_id, rule.service, rule.sample_percent, "api")
        problem = check_rule(rule)
        if problem:
            raise MirrorRuleError("INVALID_ARGUMENT", problem)
        if self.probe is None:
            raise MirrorRuleError("FAILED_PRECONDITION", "no probe port is configured: set "
                                  "mirror.probe = \"DPID:PORT\" in the controller's config")
        with self._lock:
            self.store.save_mirror_rule(rule.customer_id, rule.service, rule.sample_percent)
            self._api[rule.key] = rule
        return rule

    def remove(self, customer_id: str, service: str) -> None:
        key = (customer_id, service)
        with self._lock:
            if key in self._api:
                self.store.delete_mirror_rule(customer_id, service)
                del self._api[key]
                return
        if key in self._configured:
            raise MirrorRuleError("FAILED_PRECONDITION",
                                  f"{self._configured[key].describe()} is set in the config "
                                  "file; remove it there")
        raise MirrorRuleError("NOT_FOUND", f"no mirror rule for customer {customer_id!r} and "
                              f"service {service or '(all)'!r}")
