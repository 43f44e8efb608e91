"""ProbeService servicer: probes stream records in, operators list the latest KPIs (shell)."""

import grpc
from cems.v1 import probe_pb2 as pb

from controller.csm.store import CsmStore
from controller.kpis import KpiRecord, KpiStore, join_customers
from controller.state import PublishedState
from qoe.classify import classify_ports

MAX_PROBLEMS = 10
MAX_LIST = 10_000


def record_from_pb(probe_id: str, m: pb.FlowRecord) -> KpiRecord:
    return KpiRecord(m.probe_id or probe_id, m.src, m.dst, m.proto, m.sport, m.dport, m.kind,
                     m.interval_start_unix_s, m.interval_end_unix_s, m.packets, m.bytes,
                     m.throughput_bps, m.dscp, dict(m.kpis))


def record_pb(r: KpiRecord) -> pb.FlowRecord:
    return pb.FlowRecord(src=r.src, dst=r.dst, proto=r.proto, sport=r.sport, dport=r.dport,
                         kind=r.kind, interval_start_unix_s=r.start_unix_s,
                         interval_end_unix_s=r.end_unix_s, packets=r.packets, bytes=r.bytes,
                         throughput_bps=r.throughput_bps, dscp=r.dscp, kpis=r.kpis,
                         probe_id=r.probe_id, customer_id=r.customer_id, service=r.service)


def _service_of(record: KpiRecord) -> str:
    transport = {6: "tcp", 17: "udp"}.get(record.proto, "")
    answer = classify_ports(transport, record.sport, record.dport, record.dscp)
    return answer.service if answer else "unknown"


class ProbeServicer:
    def __init__(self, kpis: KpiStore, state: PublishedState, csm: CsmStore | None):
        self.kpis = kpis
        self.state = state
        self.csm = csm

    def ExportRecords(self, request_iterator, context):
        accepted, rejected, problems = 0, 0, []
        for request in request_iterator:
            records = [record_from_pb(request.probe_id, m) for m in request.records]
            count, found = self.kpis.add(records, request.dropped_records)
            accepted += count
            rejected += len(found)
            problems.extend(found[:MAX_PROBLEMS - len(problems)])
        return pb.ExportRecordsResponse(accepted=accepted, rejected=rejected, problems=problems)

    def _ip_to_customer(self) -> dict[str, str]:
        if self.csm is None:
            return {}
        mac_to_customer = {mac: c.customer_id for c in self.csm.customers(0, 1_000_000)
                           for mac in c.hosts}
        return {address: mac_to_customer[host.mac] for host in self.state.topology.hosts
                if host.mac in mac_to_customer for address in host.ipv4}

    def ListKpis(self, request, context):
        if request.limit > MAX_LIST:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"limit {request.limit} is above {MAX_LIST}")
        source = self.kpis.everything() if request.history else self.kpis.latest()
        records = join_customers(source, self._ip_to_customer(), _service_of)
        records = [r for r in records
                   if (not request.customer_id or r.customer_id == request.customer_id)
                   and (not request.service or r.service == request.service)]
        records.sort(key=lambda r: (r.customer_id, r.service, r.flow_key, r.start_unix_s))
        return pb.ListKpisResponse(records=[record_pb(r) for r in records[:request.limit or 1000]],
                                   accepted_total=self.kpis.accepted_total,
                                   rejected_total=self.kpis.rejected_total,
                                   probe_dropped_total=self.kpis.probe_dropped_total)
