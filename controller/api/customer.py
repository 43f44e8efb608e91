"""SlaService and SlsService servicers: requests -> csm core checks -> CsmStore (shell).

Each request: who is asking (from the auth interceptor), may they (rules.authorize), does
the request hold (rules.check_*), and then one store transaction. Refusals answer with the
rule's status code and message and are written to the audit log like successes.
"""

import calendar
import datetime
import logging
import math
import time

import grpc
from cems.v1 import customer_pb2 as pb

from controller.api.auth import current_principal
from controller.csm import rules
from controller.csm.admission import path_loads, port_capacity_bps
from controller.csm.mapping import METER_BASE
from controller.csm.report import MeterReading, combined_availability, compute_report
from controller.csm.model import ClassBounds, Customer, Principal, Role, ServiceClass, Sla, Sls
from controller.csm.store import CsmStore
from controller.state import PublishedState

LOG = logging.getLogger("cems.csm")
_CLASS_TO_PB = {ServiceClass.GOLD: pb.SERVICE_CLASS_GOLD, ServiceClass.SILVER: pb.SERVICE_CLASS_SILVER,
                ServiceClass.BRONZE: pb.SERVICE_CLASS_BRONZE}
_PB_TO_CLASS = {v: k for k, v in _CLASS_TO_PB.items()}
_PB_TO_ROLE = {pb.ROLE_DOMAIN_MANAGER: Role.DOMAIN_MANAGER, pb.ROLE_CUSTOMER: Role.CUSTOMER,
               pb.ROLE_PEER_DOMAIN: Role.PEER_DOMAIN}
MAX_LIST = 10_000


def service_class_of(value: int) -> ServiceClass:
    if value not in _PB_TO_CLASS:
        raise rules.Refused("INVALID_ARGUMENT", f"service_class {value} is not one of "
                            "SERVICE_CLASS_GOLD, SERVICE_CLASS_SILVER, SERVICE_CLASS_BRONZE")
    return _PB_TO_CLASS[value]


def customer_pb(c: Customer) -> pb.Customer:
    return pb.Customer(customer_id=c.customer_id, name=c.name, segment=c.segment, vip=c.vip,
                       access_dpid=c.access_dpid, access_port=c.access_port, hosts=list(c.hosts))


def sla_pb(s: Sla) -> pb.Sla:
    return pb.Sla(customer_id=s.customer_id, variant=s.variant,
                  bounds=[pb.ClassBounds(service_class=_CLASS_TO_PB[c], min_bps=b.min_bps,
                                         max_bps=b.max_bps) for c, b in s.bounds.items()],
                  availability_target=s.availability_target,
                  min_change_interval_s=s.min_change_interval_s)


def sls_pb(s: Sls) -> pb.Sls:
    return pb.Sls(customer_id=s.customer_id, service_class=_CLASS_TO_PB[s.service_class],
                  rate_bps=s.rate_bps, changed_unix_s=s.changed_unix_s)


def customer_from_pb(m: pb.Customer) -> Customer:
    return Customer(m.customer_id, m.name, m.segment or "residential", m.vip, m.access_dpid,
                    m.access_port, tuple(h.lower() for h in m.hosts))


def sla_from_pb(m: pb.Sla, customer_id: str) -> Sla:
    bounds = {}
    for b in m.bounds:
        service_class = service_class_of(b.service_class)
        if service_class in bounds:
            raise rules.Refused("INVALID_ARGUMENT", f"{service_class.value} bounds given twice")
        bounds[service_class] = ClassBounds(b.min_bps, b.max_bps)
    return Sla(customer_id, m.variant, bounds, m.availability_target or 0.999,
               m.min_change_interval_s)


def _required(customer_id: str) -> str:
    """The customer a request is about; a caller with no customer of its own must name one."""
    if not customer_id:
        raise rules.Refused("INVALID_ARGUMENT", "customer_id is required for this caller")
    return customer_id


class _Base:
    """Shared request handling: principal, audit, Refused -> status."""

    def __init__(self, csm: CsmStore, state: PublishedState, gateway_dpid: int = 0,
                 capacities: dict | None = None, on_change=None):
        self.csm = csm
        self.state = state
        self.gateway_dpid = gateway_dpid
        self.capacities = capacities or {}
        self.on_change = on_change or (lambda customer_id: None)

    def _run(self, context, action: str, customer_id: str, work):
        principal = current_principal()
        try:
            rules.authorize(principal, action, customer_id)
            reply = work(principal)
        except rules.Refused as refused:
            self.csm.audit(principal, action, customer_id, f"refused:{refused.code}",
                           refused.message)
            context.abort(getattr(grpc.StatusCode, refused.code), refused.message)
        self.csm.audit(principal, action, customer_id, "ok")
        return reply

    @staticmethod
    def _own(principal: Principal | None, customer_id: str) -> str:
        """The customer a request is about: as given, or the caller's own."""
        if customer_id:
            return customer_id
        if principal is not None and principal.customer_id:
            return principal.customer_id
        return ""


class SlaServicer(_Base):
    """Domain manager: customers, SLAs (with admission control) and tokens."""

    def _admission(self, customer: Customer, sla: Sla):
        snapshot = self.state.topology
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

    def CreateCustomer(self, request, context):
        customer = customer_from_pb(request.customer)

        def work(_principal):
            rules.check_customer(customer)
            sla = sla_from_pb(request.sla, customer.customer_id)
            admit = self._admission(customer, sla)
            first = rules.initial_sls(sla, time.time())
            self.csm.create_customer(customer, sla, first, admit)
            self.on_change(customer.customer_id)
            return pb.CreateCustomerResponse(customer=customer_pb(customer), sla=sla_pb(sla),
                                             sls=sls_pb(first))
        return self._run(context, "manage", customer.customer_id, work)

    def GetCustomer(self, request, context):
        def work(_principal):
            return pb.GetCustomerResponse(
                customer=customer_pb(self.csm.customer(request.customer_id)),
                sla=sla_pb(self.csm.sla(request.customer_id)),
                sls=sls_pb(self.csm.current_sls(request.customer_id)))
        return self._run(context, "manage", request.customer_id, work)

    def ListCustomers(self, request, context):
        def work(_principal):
            if request.limit > MAX_LIST:
                raise rules.Refused("INVALID_ARGUMENT",
                                    f"limit {request.limit} is above {MAX_LIST}; page with offset")
            customers = self.csm.customers(request.offset, request.limit or 1000)
            return pb.ListCustomersResponse(customers=[customer_pb(c) for c in customers],
                                            total=self.csm.count_customers())
        return self._run(context, "manage", "", work)

    def UpdateSla(self, request, context):
        customer_id = request.sla.customer_id

        def work(_principal):
            customer = self.csm.customer(customer_id)
            sla = sla_from_pb(request.sla, customer_id)
            admit = self._admission(customer, sla)

            def fix(new_sla: Sla, current: Sls | None) -> Sls | None:
                if current is None:
                    return rules.initial_sls(new_sla, time.time())
                bounds = new_sla.bounds.get(current.service_class)
                if bounds is None:
                    return rules.initial_sls(new_sla, time.time())
                clamped = min(max(current.rate_bps, bounds.min_bps), bounds.max_bps)
                if clamped != current.rate_bps:
                    return Sls(customer_id, current.service_class, clamped, time.time(), "system")
                return None
            fixed = self.csm.update_sla(sla, admit, fix)
            self.on_change(customer_id)
            return pb.UpdateSlaResponse(sla=sla_pb(sla),
                                        sls=sls_pb(fixed or self.csm.current_sls(customer_id)))
        return self._run(context, "manage", customer_id, work)

    def DeleteCustomer(self, request, context):
        def work(_principal):
            self.csm.delete_customer(request.customer_id)
            self.on_change(request.customer_id)
            return pb.DeleteCustomerResponse()
        return self._run(context, "manage", request.customer_id, work)

    def CreateToken(self, request, context):
        def work(_principal):
            if request.role not in _PB_TO_ROLE:
                raise rules.Refused("INVALID_ARGUMENT", "role must be ROLE_DOMAIN_MANAGER, "
                                    "ROLE_CUSTOMER or ROLE_PEER_DOMAIN")
            token_id, token = self.csm.create_token(_PB_TO_ROLE[request.role], request.customer_id)
            return pb.CreateTokenResponse(token_id=token_id, token=token)
        return self._run(context, "manage", request.customer_id, work)


class SlsServicer(_Base):
    """Customers and peer domains: their own SLA and SLS."""

    def GetSla(self, request, context):
        customer_id = self._own(current_principal(), request.customer_id)
        return self._run(context, "read_sla", customer_id, lambda _p: pb.GetSlaResponse(
            sla=sla_pb(self.csm.sla(_required(customer_id)))))

    def GetSls(self, request, context):
        customer_id = self._own(current_principal(), request.customer_id)
        return self._run(context, "read_sls", customer_id, lambda _p: pb.GetSlsResponse(
            sls=sls_pb(self.csm.current_sls(_required(customer_id)))))

    def ChangeSls(self, request, context):
        customer_id = self._own(current_principal(), request.customer_id)

        def work(_principal):
            service_class = service_class_of(request.service_class)
            now = time.time()
            new = self.csm.change_sls(customer_id, lambda sla, last: rules.check_sls_change(
                sla, last, service_class, request.rate_bps, now))
            LOG.info("customer %s: SLS now %s at %d bit/s", customer_id,
                     new.service_class.value, new.rate_bps)
            self.on_change(customer_id)
            next_allowed = now + self.csm.sla(customer_id).min_change_interval_s
            return pb.ChangeSlsResponse(sls=sls_pb(new), next_change_allowed_unix_s=next_allowed)
        return self._run(context, "change_sls", customer_id, work)


def month_start_unix_s(now_unix_s: float) -> float:
    now = datetime.datetime.fromtimestamp(now_unix_s, datetime.timezone.utc)
    return float(calendar.timegm((now.year, now.month, 1, 0, 0, 0)))


def _optional(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


class ReportServicer(_Base):
    """Per-customer reports for the period asked (default: this month so far)."""

    def GetReport(self, request, context):
        customer_id = self._own(current_principal(), request.customer_id)

        def work(_principal):
            _required(customer_id)
            now = time.time()
            end = request.end_unix_s or now
            start = request.start_unix_s or month_start_unix_s(end)
            if end <= start:
                raise rules.Refused("INVALID_ARGUMENT", f"end_unix_s {end} must be after "
                                    f"start_unix_s {start}")
            customer = self.csm.customer(customer_id)
            history = self.csm.sls_history(customer_id)
            store = self.csm.store
            # availability counts from when the customer exists
            availability = combined_availability(
                store.availability_events(customer.access_dpid, 0, end),
                store.availability_events(customer.access_dpid, customer.access_port, end),
                max(start, history[0].changed_unix_s if history else start), min(end, now))
            meter_id = METER_BASE + self.csm.customer_index(customer_id)
            meter = next((MeterReading(*m.counters, m.rates[1], m.rates[3])
                          for m in self.state.meters.get(customer.access_dpid, ())
                          if m.meter_id == meter_id), None)
            report = compute_report(self.csm.sla(customer_id), history, start, end,
                                    availability, meter)
            target = report.target
            return pb.GetReportResponse(
                customer_id=customer_id, start_unix_s=start, end_unix_s=end,
                variant=report.variant, current_sls=sls_pb(report.current),
                classes=[pb.ClassHours(service_class=_CLASS_TO_PB[c], hours=h,
                                       charge=report.charges[c])
                         for c, h in report.hours.items()],
                total_charge=report.total_charge, availability=_optional(report.availability),
                availability_target=report.availability_target,
                availability_met=report.availability_met,
                throughput_bps=_optional(report.throughput_bps),
                policed_ratio=_optional(report.policed_ratio),
                delay_ms=report.delay_ms, jitter_ms=report.jitter_ms,
                loss_ratio=report.loss_ratio, target_delay_ms=target.delay_ms,
                target_jitter_ms=target.jitter_ms, target_loss_ratio=target.loss_ratio,
                target_source=target.source, unknown=list(report.unknown))
        return self._run(context, "read_report", customer_id, work)
