"""ProbeService servicer: probes stream records in, operators list the latest KPIs (shell).

A probe's records and task stream are under the probe id of its credential (a probe token
or certificate), never one a message names. The KpiStore validates, joins (customer and
service) and keeps the records as they arrive; accepted records are also published on the
event bus (EVENT_KIND_KPI for WatchEvents). ListKpis is scoped to the caller.
"""

import time

import grpc
from cems.v1 import probe_pb2 as pb

from controller.api import convert
from controller.api.active import watch_tasks
from controller.api.auth import current_principal, refuse
from controller.csm import rules
from controller.events import EventBus, KpiRecords
from controller.monitor.active import ActiveTests
from controller.monitor.kpis import KpiStore
from controller.monitor.scope import Scope

MAX_PROBLEMS = 10
MAX_LIST = 10_000
MAX_RECORDS_PER_REQUEST = 10_000


def take_records(kpis: KpiStore, bus: EventBus, on_records, probe_id: str,
                 request: pb.ExportRecordsRequest, records=None,
                 replayed_unix_s: float | None = None) -> tuple[int, list[str]]:
    """One batch of a probe's records, however it came (gRPC, or the NATS stream of
    controller.stream): its health, then the records, which go to the KpiStore, the quality
    assessor (`on_records`) and the event bus. (records stored, a problem per rejected one)
    `records`: those of the batch's records to take (the stream's customer partitions);
    None: all of them. `replayed_unix_s`: the batch is one the stream replays for partitions
    just taken, as it arrived then: its quality samples count from then, and its probe
    health and dropped count, which the instance took when it came, are not taken again."""
    replayed = replayed_unix_s is not None
    if request.HasField("health") and not replayed:
        kpis.set_health(convert.health_from_pb(probe_id, request.health))
    stored, found = kpis.add_records(
        [convert.record_from_pb(probe_id, m) for m in
         (request.records if records is None else records)],
        0 if replayed else request.dropped_records)
    if stored and on_records is not None:
        if replayed:
            on_records(stored, replayed_unix_s)
        else:
            on_records(stored)
    if stored and len(bus):
        bus.publish(KpiRecords(time.time(), tuple(stored)))
    return len(stored), found


class ProbeServicer:
    def __init__(self, kpis: KpiStore, bus: EventBus, active: ActiveTests, stop_event=None,
                 scope_of=lambda principal: Scope(), on_records=None):
        self.scope_of = scope_of
        self.on_records = on_records  # accepted records -> quality (the Assessor)
        self.active = active
        self.stop_event = stop_event
        self.kpis = kpis
        self.bus = bus

    def ExportRecords(self, request_iterator, context):
        probe_id = current_principal().probe_id
        accepted, rejected, problems = 0, 0, []
        for request in request_iterator:
            named = {request.probe_id, request.health.probe_id, *(m.probe_id for m in request.records)}
            if named - {"", probe_id}:
                refuse(context, rules.Refused(
                    "PERMISSION_DENIED", f"this credential is probe {probe_id!r}; the request "
                    f"names {sorted(named - {'', probe_id})[0]!r}"))
            if len(request.records) > MAX_RECORDS_PER_REQUEST:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"records: {len(request.records)} in one request, more than "
                              f"{MAX_RECORDS_PER_REQUEST}; send them in batches")
            stored, found = self.take(probe_id, request)
            accepted += stored
            rejected += len(found)
            problems.extend(found[:MAX_PROBLEMS - len(problems)])
        return pb.ExportRecordsResponse(accepted=accepted, rejected=rejected, problems=problems)

    def take(self, probe_id: str, request: pb.ExportRecordsRequest) -> tuple[int, list[str]]:
        return take_records(self.kpis, self.bus, self.on_records, probe_id, request)

    def WatchTasks(self, request, context):
        probe_id = current_principal().probe_id
        if request.probe_id not in ("", probe_id):
            refuse(context, rules.Refused("PERMISSION_DENIED", f"this credential is probe "
                                          f"{probe_id!r}, not {request.probe_id!r}"))
        yield from watch_tasks(self.active, probe_id, context, self.stop_event)

    def ListKpis(self, request, context):
        if request.limit > MAX_LIST:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"limit {request.limit} is above {MAX_LIST}")
        principal = current_principal()
        try:
            rules.authorize(principal, "read_kpis", request.customer_id)
        except rules.Refused as refused:
            refuse(context, refused)
        scope = self.scope_of(principal)
        customer_id = request.customer_id if scope.everything else scope.customer_id
        try:
            offset = int(request.page_token or 0)
            if offset < 0:
                raise ValueError
        except ValueError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"page_token {request.page_token[:40]!r} is not one this controller "
                          "gave; use next_page_token of the previous answer, or none")
        page = self.kpis.select(customer_id, request.service, request.history,
                                request.include_ended, offset, request.limit or 1000)
        return pb.ListKpisResponse(
            records=[convert.kpi_record_pb(r, self.kpis.age_of(r)) for r in page.records],
            next_page_token="" if page.next_offset is None else str(page.next_offset),
            total=page.total,
            accepted_total=self.kpis.accepted_total, rejected_total=self.kpis.rejected_total,
            probe_dropped_total=self.kpis.probe_dropped_total,
            probes=[convert.health_pb(h) for h in self.kpis.probes()])
