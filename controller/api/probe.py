"""ProbeService servicer: probes stream records in, operators list the latest KPIs (shell).

The KpiStore validates, joins (customer and service) and keeps the records as they arrive;
accepted records are also published on the event bus (EVENT_KIND_KPI for WatchEvents).
"""

import time

import grpc
from cems.v1 import probe_pb2 as pb

from controller.api import convert
from controller.api.active import watch_tasks
from controller.events import EventBus, KpiRecords
from controller.monitor.active import ActiveTests
from controller.monitor.kpis import KpiStore

MAX_PROBLEMS = 10
MAX_LIST = 10_000


class ProbeServicer:
    def __init__(self, kpis: KpiStore, bus: EventBus, active: ActiveTests, stop_event=None):
        self.active = active
        self.stop_event = stop_event
        self.kpis = kpis
        self.bus = bus

    def ExportRecords(self, request_iterator, context):
        accepted, rejected, problems = 0, 0, []
        for request in request_iterator:
            if request.HasField("health"):
                self.kpis.set_health(convert.health_from_pb(request.probe_id, request.health))
            stored, found = self.kpis.add_records(
                [convert.record_from_pb(request.probe_id, m) for m in request.records],
                request.dropped_records)
            accepted += len(stored)
            rejected += len(found)
            problems.extend(found[:MAX_PROBLEMS - len(problems)])
            if stored and len(self.bus):
                self.bus.publish(KpiRecords(time.time(), tuple(stored)))
        return pb.ExportRecordsResponse(accepted=accepted, rejected=rejected, problems=problems)

    def WatchTasks(self, request, context):
        yield from watch_tasks(self.active, request, context, self.stop_event)

    def ListKpis(self, request, context):
        if request.limit > MAX_LIST:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"limit {request.limit} is above {MAX_LIST}")
        records = self.kpis.select(request.customer_id, request.service, request.history)
        return pb.ListKpisResponse(
            records=[convert.kpi_record_pb(r) for r in records[:request.limit or 1000]],
            accepted_total=self.kpis.accepted_total, rejected_total=self.kpis.rejected_total,
            probe_dropped_total=self.kpis.probe_dropped_total,
            probes=[convert.health_pb(h) for h in self.kpis.probes()])
