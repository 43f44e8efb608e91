"""ProbeService servicer: probes stream records in, operators list the latest KPIs (shell).

Accepted records are also published on the event bus (EVENT_KIND_KPI for WatchEvents),
joined with customer and service like ListKpis. The address -> customer map behind the join
is rebuilt at most once per JOIN_TTL_S, not for every batch.
"""

import threading
import time

import grpc
from cems.v1 import probe_pb2 as pb

from controller.active import ActiveTests
from controller.api.active import watch_tasks
from controller.api.convert import kpi_record_pb as record_pb
from controller.csm.store import CsmStore
from controller.events import KpiRecords
from controller.kpis import KpiRecord, KpiStore, ProbeHealth, join_customers, service_of
from controller.state import PublishedState

MAX_PROBLEMS = 10
MAX_LIST = 10_000
JOIN_TTL_S = 2.0


def record_from_pb(probe_id: str, m: pb.FlowRecord) -> KpiRecord:
    return KpiRecord(m.probe_id or probe_id, m.src, m.dst, m.proto, m.sport, m.dport, m.kind,
                     m.interval_start_unix_s, m.interval_end_unix_s, m.packets, m.bytes,
                     m.throughput_bps, m.dscp, dict(m.kpis))


def health_from_pb(probe_id: str, m: pb.ProbeHealth) -> ProbeHealth:
    return ProbeHealth(m.probe_id or probe_id, m.time_unix_s, m.source, m.frames, m.malformed,
                       m.kernel_received, m.kernel_dropped, m.flows_tracked, m.flows_evicted,
                       m.export_dropped)


def health_pb(h: ProbeHealth) -> pb.ProbeHealth:
    return pb.ProbeHealth(probe_id=h.probe_id, time_unix_s=h.time_unix_s, source=h.source,
                          frames=h.frames, malformed=h.malformed,
                          kernel_received=h.kernel_received, kernel_dropped=h.kernel_dropped,
                          flows_tracked=h.flows_tracked, flows_evicted=h.flows_evicted,
                          export_dropped=h.export_dropped)


class ProbeServicer:
    def __init__(self, kpis: KpiStore, state: PublishedState, csm: CsmStore | None,
                 active: ActiveTests, stop_event=None):
        self.active = active
        self.stop_event = stop_event
        self.kpis = kpis
        self.state = state
        self.csm = csm
        self._join_lock = threading.Lock()
        self._join: tuple[float, dict[str, str]] = (float("-inf"), {})

    def ExportRecords(self, request_iterator, context):
        accepted, rejected, problems = 0, 0, []
        for request in request_iterator:
            if request.HasField("health"):
                self.kpis.set_health(health_from_pb(request.probe_id, request.health))
            records = [record_from_pb(request.probe_id, m) for m in request.records]
            stored, found = self.kpis.add_records(records, request.dropped_records)
            accepted += len(stored)
            rejected += len(found)
            problems.extend(found[:MAX_PROBLEMS - len(problems)])
            if stored and len(self.state.bus):
                joined = join_customers(stored, self._ip_to_customer(), service_of)
                self.state.bus.publish(KpiRecords(time.time(), tuple(joined)))
        return pb.ExportRecordsResponse(accepted=accepted, rejected=rejected, problems=problems)

    def WatchTasks(self, request, context):
        yield from watch_tasks(self.active, request, context, self.stop_event)

    def _ip_to_customer(self, fresh: bool = False) -> dict[str, str]:
        if self.csm is None:
            return {}
        with self._join_lock:
            built, mapping = self._join
            if fresh or time.monotonic() - built > JOIN_TTL_S:
                mac_to_customer = {mac: c.customer_id for c in self.csm.customers(0, 1_000_000)
                                   for mac in c.hosts}
                mapping = {address: mac_to_customer[host.mac]
                           for host in self.state.topology.hosts
                           if host.mac in mac_to_customer for address in host.ipv4}
                self._join = (time.monotonic(), mapping)
            return mapping

    def ListKpis(self, request, context):
        if request.limit > MAX_LIST:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"limit {request.limit} is above {MAX_LIST}")
        source = self.kpis.everything() if request.history else self.kpis.latest()
        records = join_customers(source, self._ip_to_customer(fresh=True), service_of)
        records = [r for r in records
                   if (not request.customer_id or r.customer_id == request.customer_id)
                   and (not request.service or r.service == request.service)]
        records.sort(key=lambda r: (r.customer_id, r.service, r.flow_key, r.probe_id,
                                    r.start_unix_s))
        return pb.ListKpisResponse(records=[record_pb(r) for r in records[:request.limit or 1000]],
                                   accepted_total=self.kpis.accepted_total,
                                   rejected_total=self.kpis.rejected_total,
                                   probe_dropped_total=self.kpis.probe_dropped_total,
                                   probes=[health_pb(h) for h in self.kpis.probes()])
