"""Customer service management as the API offers it (core; the store is passed in).

Every request goes through a Gate: who is asking (a Principal, from the gRPC interceptor),
may they (rules.authorize), then the work, then one line in the audit log, refused or not.
CustomerService holds what the work is: the checks of controller.csm.rules and admission,
one store transaction (controller.csm.store, which checks against the stored state inside
it), and a CustomerChanged event carrying the customer's new state, so that the mapping
(and anyone else listening) acts on the change without reading the store again.

No gRPC here: servicers convert protobuf to these arguments and the results back.
"""

import calendar
import dataclasses
import datetime
import logging
import time
from typing import Callable, Iterable

from controller.csm import rules
from controller.csm.admission import path_loads, port_capacity_bps
from controller.csm.model import Customer, CustomerState, Principal, Role, ServiceClass, Sla, Sls
from controller.csm.report import CustomerReport, MeterReading, combined_availability, \
    compute_report
from controller.network.topology import TopologySnapshot

LOG = logging.getLogger("cems.csm")
MAX_LIST = 10_000


@dataclasses.dataclass(frozen=True)
class CustomerChanged:
    """A customer was created or changed (its new state) or deleted (state None)."""

    customer_id: str
    state: CustomerState | None


class Gate:
    """Authorization and audit around every request of the customer-facing services."""

    def __init__(self, store):
        self.store = store  # audit(principal, action, customer_id, outcome, detail)

    def run(self, principal: Principal | None, action: str, customer_id: str, work,
            own: bool = False):
        """work(customer_id) if `principal` may do `action` on the customer (with `own`,
        the caller's own customer when the request names none); every outcome is audited.
        Raises rules.Refused."""
        if own and not customer_id and principal is not None:
            customer_id = principal.customer_id
        try:
            rules.authorize(principal, action, customer_id)
            result = work(customer_id)
        except rules.Refused as refused:
            self.store.audit(principal, action, customer_id, f"refused:{refused.code}",
                             refused.message)
            raise
        self.store.audit(principal, action, customer_id, "ok")
        return result


def required(customer_id: str) -> str:
    """The customer a request is about; a caller with no customer of its own must name one."""
    if not customer_id:
        raise rules.Refused("INVALID_ARGUMENT", "customer_id is required for this caller")
    return customer_id


def month_start_unix_s(now_unix_s: float) -> float:
    now = datetime.datetime.fromtimestamp(now_unix_s, datetime.timezone.utc)
    return float(calendar.timegm((now.year, now.month, 1, 0, 0, 0)))


class CustomerService:
    """Customers, SLAs, SLSs, tokens and reports, on top of a CsmStore."""

    def __init__(self, store, topology: Callable[[], TopologySnapshot],
                 meters: Callable[[int], Iterable] = lambda dpid: (), gateway_dpid: int = 0,
                 capacities: dict | None = None,
                 on_change: Callable[[CustomerChanged], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 measurements: Callable | None = None):
        """`topology()` is the latest TopologySnapshot (admission), `meters(dpid)` the meter
        views of a switch (reports); `on_change` hears every stored change;
        `measurements(customer_id, service_class, start, end)` what the probes measured of a
        customer in a period (controller.monitor.period.PeriodMeasurements or None)."""
        self.store = store
        self.topology = topology
        self.meters = meters
        self.gateway_dpid = gateway_dpid
        self.capacities = capacities or {}
        self.on_change = on_change or (lambda change: None)
        self.clock = clock
        self.measurements = measurements or (lambda customer_id, service_class, start, end:
                                             None)

    def _changed(self, customer_id: str, state: CustomerState | None) -> None:
        self.on_change(CustomerChanged(customer_id, state))

    # -- admission ------------------------------------------------------------------------
    def _admission(self, customer: Customer, sla: Sla):
        """Check the SLA against the access port now; returns the check against the path's
        committed load that the store runs inside its transaction."""
        snapshot = self.topology()
        access = port_capacity_bps(snapshot, customer.access_dpid, customer.access_port,
                                   self.capacities)
        if access is None:
            raise rules.Refused("FAILED_PRECONDITION",
                                f"access port {customer.access_dpid:016x}:{customer.access_port} "
                                "is not known to the controller (switch not connected?) and has "
                                "no configured capacity (csm.link_capacity_bps)")
        rules.check_sla(sla, access)

        def admit(committed_by_access: dict[int, int], replacing: Sla | None = None):
            if self.gateway_dpid:
                rules.check_admission(sla, path_loads(snapshot, customer.access_dpid,
                                                      self.gateway_dpid, committed_by_access,
                                                      self.capacities), replacing)
        return admit

    # -- the domain manager's ---------------------------------------------------------
    def create_customer(self, customer: Customer, sla: Sla) -> CustomerState:
        rules.check_customer(customer)
        admit = self._admission(customer, sla)
        state = self.store.create_customer(customer, sla, rules.initial_sls(sla, self.clock()),
                                           admit)
        self._changed(customer.customer_id, state)
        return state

    def customer(self, customer_id: str) -> tuple[Customer, Sla, Sls]:
        return (self.store.customer(customer_id), self.store.sla(customer_id),
                self.store.current_sls(customer_id))

    def customers(self, offset: int, limit: int) -> tuple[list[Customer], int]:
        """A page of customers (by id) and how many there are."""
        if limit > MAX_LIST:
            raise rules.Refused("INVALID_ARGUMENT", f"limit {limit} is above {MAX_LIST}; "
                                "page with offset")
        return self.store.customers(offset, limit or 1000), self.store.count_customers()

    def update_sla(self, sla: Sla) -> Sls:
        """Replace a customer's SLA (admission checked); returns the SLS in force after it,
        which the SLA change may have moved into the new bounds."""
        customer = self.store.customer(sla.customer_id)
        admit = self._admission(customer, sla)
        now = self.clock()
        state = self.store.update_sla(
            sla, admit, lambda new, current: rules.sls_within_sla(new, current, now))
        self._changed(sla.customer_id, state)
        return state.sls

    def delete_customer(self, customer_id: str) -> None:
        self.store.delete_customer(customer_id)
        self._changed(customer_id, None)

    def create_token(self, role: Role, customer_id: str = "", probe_id: str = "",
                     expires_unix_s: float | None = None) -> tuple[str, str]:
        """A bearer token: (token_id, the token, shown only now)."""
        return self.store.create_token(role, customer_id, probe_id=probe_id,
                                       expires_unix_s=expires_unix_s)

    def tokens(self) -> list:
        return self.store.tokens()

    def revoke_token(self, token_id: str) -> None:
        """The token stops working at once (its next request is UNAUTHENTICATED)."""
        if not self.store.revoke_token(token_id):
            raise rules.Refused("NOT_FOUND", f"no token {token_id!r}")

    # -- the customer's ---------------------------------------------------------------
    def sla(self, customer_id: str) -> Sla:
        return self.store.sla(required(customer_id))

    def sls(self, customer_id: str) -> Sls:
        return self.store.current_sls(required(customer_id))

    def change_sls(self, customer_id: str, service_class: ServiceClass, rate_bps: int
                   ) -> tuple[Sls, float]:
        """The customer's new SLS and when it may next change it (unix time)."""
        now = self.clock()
        state = self.store.change_sls(customer_id, lambda sla, last: rules.check_sls_change(
            sla, last, service_class, rate_bps, now))
        LOG.info("customer %s: SLS now %s at %d bit/s", customer_id,
                 state.sls.service_class.value, state.sls.rate_bps)
        self._changed(customer_id, state)
        return state.sls, now + self.store.sla(customer_id).min_change_interval_s

    def report(self, customer_id: str, start_unix_s: float = 0.0, end_unix_s: float = 0.0
               ) -> CustomerReport:
        """The customer's report for [start, end) (defaults: the start of end's month, now)."""
        required(customer_id)
        for field, value in (("start_unix_s", start_unix_s), ("end_unix_s", end_unix_s)):
            if not 0 <= value <= 2.0 ** 33:  # refuses NaN too
                raise rules.Refused("INVALID_ARGUMENT", f"{field} must be a unix time (0 for "
                                    f"the default), got {value}")
        now = self.clock()
        end = end_unix_s or now
        start = start_unix_s or month_start_unix_s(end)
        if end <= start:
            raise rules.Refused("INVALID_ARGUMENT", f"end_unix_s {end} must be after "
                                f"start_unix_s {start}")
        state = self.store.customer_state(customer_id)
        if state is None:
            raise rules.Refused("NOT_FOUND", f"no customer {customer_id!r}")
        customer = state.customer
        history = self.store.sls_history(customer_id)
        # availability counts from when the customer exists
        availability = combined_availability(
            self.store.availability_events(customer.access_dpid, 0, end),
            self.store.availability_events(customer.access_dpid, customer.access_port, end),
            max(start, history[0].changed_unix_s if history else start), min(end, now))
        meter = next((MeterReading(*m.counters, m.rates[1], m.rates[3], now)
                      for m in self.meters(customer.access_dpid)
                      if m.meter_id == state.meter_id), None)
        then = self.store.meter_reading(customer.access_dpid, state.meter_id, start)
        meter_then = MeterReading(then[1], then[2], then[3], then[4], time_unix_s=then[0]) \
            if then is not None and then[0] < end else None
        measured = self.measurements(customer_id, history[-1].service_class.value, start,
                                     min(end, now)) if history else None
        return compute_report(self.store.sla(customer_id), history, start, end, availability,
                              meter, meter_then, measured)

