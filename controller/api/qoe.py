"""QoeService servicer: experience per customer and service, findings, sessions, zooms (shell).

A customer (or peer domain) sees only its own experience and zooms in only on itself; the
domain manager sees all. Application sessions come from test clients and agents (a probe
credential: the client's address names the customer) or from a customer's own apps.
"""

import math
import time

import grpc
from cems.v1 import qoe_pb2 as pb

from controller import validation
from controller.api import convert
from controller.api.auth import current_principal, refuse
from controller.csm import rules
from controller.csm.model import Role
from controller.monitor.assess import SessionReport
from controller.monitor.experience import HISTORY_MINUTES
from controller.monitor.scope import Scope

MAX_LIST = 1000


class QoeServicer:
    def __init__(self, experience, state, directory, scope_of, stop_event=None):
        self.experience = experience  # controller.monitor.engine.Experience
        self.state = state
        self.directory = directory
        self.scope_of = scope_of      # principal -> Scope
        self.stop_event = stop_event

    def _customer(self, context, customer_id: str, action: str) -> str:
        principal = current_principal()
        if not customer_id and principal.role in (Role.CUSTOMER, Role.PEER_DOMAIN):
            customer_id = principal.customer_id
        try:
            rules.authorize(principal, action, customer_id)
            if not customer_id:
                raise rules.Refused("INVALID_ARGUMENT", "customer_id is required")
            rules.check_customer_id(customer_id)
        except rules.Refused as refused:
            refuse(context, refused)
        return customer_id

    def GetExperience(self, request, context):
        customer_id = self._customer(context, request.customer_id, "read_experience")
        now = time.time()
        state = self.directory.state(customer_id)
        if state is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no customer {customer_id!r}")
        customer, sls = state.customer, state.sls
        meter = next((m for m in self.state.meters.get(customer.access_dpid, ())
                      if m.meter_id == state.meter_id), None)
        passed = policed = math.nan
        if meter is not None:
            passed = max(0.0, meter.rates[1] - meter.rates[3]) * 8 \
                if not math.isnan(meter.rates[1]) else math.nan
            policed = meter.counters[2] / meter.counters[0] if meter.counters[0] else math.nan
        scope = Scope(customer_id, frozenset(customer.hosts))
        flows = sum(f.bytes_per_second * 8 for f in self.state.flows.get(customer.access_dpid, ())
                    if scope.flow(f) and f.entry.component is not None
                    and f.entry.component.name == "FORWARDING"
                    and not math.isnan(f.bytes_per_second))
        delay = self.experience.assessor.delay_of(customer_id, now)
        zoom = self.experience.zooms().get(customer_id)
        return pb.CustomerExperience(
            customer_id=customer_id,
            services=[convert.service_experience_pb(e, self._history(e, now, request.history_s))
                      for e in self.experience.book.of_customer(customer_id, now)],
            service_class=sls.service_class.value, sls_rate_bps=sls.rate_bps,
            meter_passed_bps=passed, meter_policed_ratio=policed, flows_bps=flows,
            one_way_delay_ms=delay.one_way_ms if delay else math.nan,
            delay_source=delay.source if delay else "",
            zoom=[zoom.reason] if zoom else [])

    def _history(self, e, now: float, history_s: float):
        if not history_s > 0:   # also NaN
            return ()
        return self.experience.book.history(e.customer_id, e.service, now,
                                            min(history_s, HISTORY_MINUTES * 60.0))

    def ListExperience(self, request, context):
        principal = current_principal()
        scope = self.scope_of(principal)
        if request.limit > MAX_LIST:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"limit {request.limit} is above "
                          f"{MAX_LIST}")
        try:
            offset = int(request.page_token or 0)
        except ValueError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_token is not one this "
                          "controller gave")
        rows = self.experience.book.select(
            time.time(), [request.service] if request.service else (),
            [request.status] if request.status else (), request.segment[:64],
            request.service_class[:16],
            None if scope.everything else [scope.customer_id])
        limit = request.limit or 100
        page = rows[offset:offset + limit]
        more = offset + limit < len(rows)
        return pb.ListExperienceResponse(
            experience=[convert.service_experience_pb(e) for e in page],
            next_page_token=str(offset + limit) if more else "", total=len(rows))

    def WatchExperience(self, request, context):
        scope = self.scope_of(current_principal())
        subscription = self.state.bus.subscribe()
        try:
            while context.is_active() and not (self.stop_event and self.stop_event.is_set()):
                item = subscription.get(timeout_s=0.5)
                if item is None:
                    continue
                item = scope.event(item)
                event = convert.experience_event_pb(item) if item is not None else None
                if event is not None:
                    yield event
        finally:
            subscription.close()

    def ReportSession(self, request, context):
        principal = current_principal()
        customer_id = request.customer_id
        try:
            if request.service not in ("web", "video"):
                raise ValueError(f"service {validation.shown(request.service)} must be web or "
                                 "video")
            if principal.role == Role.PROBE:
                address = validation.ip_address("client_address", request.client_address)
                _, mapping = self.directory.current()
                customer_id = mapping.get(address, "")
                if not customer_id:
                    refuse(context, rules.Refused(
                        "NOT_FOUND", f"client_address {address} is not a known customer's"))
            elif principal.role in (Role.CUSTOMER, Role.PEER_DOMAIN):
                if customer_id not in ("", principal.customer_id):
                    refuse(context, rules.Refused("PERMISSION_DENIED", "a customer reports "
                                                  "its own sessions only"))
                customer_id = principal.customer_id
            for field, value, high in (("page_load_s", request.page_load_s, 3600),
                                       ("mean_stall_s", request.mean_stall_s, 3600),
                                       ("initial_delay_s", request.initial_delay_s, 3600),
                                       ("bitrate_bps", request.bitrate_bps, 1e12)):
                validation.number(field, value, 0, high)
            validation.number("stalls", request.stalls, 0, 100_000)
            if request.service == "web" and not request.page_load_s > 0:
                raise ValueError("page_load_s is required for a web session")
        except ValueError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        quality = self.experience.assessor.session(SessionReport(
            customer_id, request.service, request.page_load_s or None, request.stalls,
            request.mean_stall_s, request.initial_delay_s or None, request.bitrate_bps or None))
        return pb.ReportSessionResponse(quality=convert.quality_pb(quality),
                                        customer_id=customer_id)

    def RequestZoom(self, request, context):
        customer_id = self._customer(context, request.customer_id, "zoom")
        if self.directory.state(customer_id) is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no customer {customer_id!r}")
        try:
            seconds = validation.number("seconds", request.seconds, 0, 86_400)
        except ValueError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        who = current_principal().describe()
        reason = validation.truncated(request.reason or f"asked by {who}", 200)
        zoom, (mirror, stamp) = self.experience.request_zoom(customer_id, reason,
                                                             seconds or None)
        if zoom is None:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "the most zooms this controller "
                          "runs at once are running; try again later")
        return pb.ZoomResponse(zoom=convert.zoom_pb(zoom, True, mirror, stamp))

    def ListFindings(self, request, context):
        return pb.ListFindingsResponse(findings=[convert.finding_pb(f)
                                                 for f in self.experience.findings()])
