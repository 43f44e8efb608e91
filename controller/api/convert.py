"""Every conversion between cems.v1 protobuf messages and domain data, in one place (shell).

Sections: status (snapshots and events), probes (records, health, active tests, mirror
rules), customer service management (customers, SLAs, SLSs, reports). A conversion from
protobuf that cannot be made raises rules.Refused(INVALID_ARGUMENT) naming the field.
"""

import math

from cems.v1 import customer_pb2
from cems.v1 import probe_pb2
from cems.v1 import status_pb2 as pb

from controller import validation
from controller.csm import rules
from controller.csm.model import GSB_VARIANTS, ClassBounds, Customer, Role, ServiceClass, Sla, Sls, \
    TokenInfo
from controller.csm.report import CustomerReport
from controller.events import (FlowRates, FlowView, HostLearned, KpiRecords, LinkChanged,
                               MeterStatsView, PortChanged, PortStatsView, SwitchChanged)
from controller.monitor.kpis import KpiRecord, ProbeHealth
from controller.monitor.active import DEFAULT_PORT, StampSpec, TestState
from controller.monitor.mirror import MirrorRule
from controller.network.topology import HostInfo, LinkKey, PortInfo, TopologySnapshot
from controller.openflow.messages import format_actions, format_match


# -- status -------------------------------------------------------------------------------


def port_pb(dpid: int, port: PortInfo, edge: bool, capacity_bps: int = 0) -> pb.Port:
    return pb.Port(dpid=dpid, port_no=port.port_no, name=port.name, hw_addr=port.hw_addr,
                   up=port.up, curr_speed_kbps=port.curr_speed_kbps,
                   max_speed_kbps=port.max_speed_kbps, edge=edge,
                   capacity_bps=capacity_bps or port.curr_speed_kbps * 1000)


def link_pb(link: LinkKey) -> pb.Link:
    return pb.Link(src_dpid=link.src_dpid, src_port=link.src_port, dst_dpid=link.dst_dpid,
                   dst_port=link.dst_port)


def host_pb(host: HostInfo) -> pb.Host:
    return pb.Host(mac=host.mac, ipv4=list(host.ipv4), dpid=host.dpid, port_no=host.port_no)


def topology_pb(topology: TopologySnapshot, connected: frozenset[int],
                capacities=None) -> pb.GetTopologyResponse:
    """`capacities`: {(dpid, port): bit/s} configured, overriding the ports' speeds."""
    capacities = capacities or {}
    link_ports = {(l.src_dpid, l.src_port) for l in topology.links}
    link_ports |= {(l.dst_dpid, l.dst_port) for l in topology.links}
    switches = [pb.Switch(dpid=s.dpid, dpid_hex=f"{s.dpid:016x}", connected=s.dpid in connected,
                          address=s.address,
                          ports=[port_pb(s.dpid, p, (s.dpid, p.port_no) not in link_ports,
                                         int(capacities.get((s.dpid, p.port_no), 0)))
                                 for p in s.ports])
                for s in topology.switches]
    return pb.GetTopologyResponse(switches=switches, links=[link_pb(l) for l in topology.links],
                                  hosts=[host_pb(h) for h in topology.hosts])


def _rate(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def flow_pb(flow: FlowView) -> pb.Flow:
    component = flow.entry.component
    return pb.Flow(dpid=flow.dpid, table_id=flow.entry.table_id, priority=flow.entry.priority,
                   cookie=flow.entry.cookie,
                   component=component.name.lower() if component else "",
                   match=format_match(flow.entry.match),
                   actions=format_actions(flow.entry.instructions),
                   packet_count=flow.packet_count, byte_count=flow.byte_count,
                   bytes_per_second=_rate(flow.bytes_per_second),
                   packets_per_second=_rate(flow.packets_per_second),
                   duration_s=flow.duration_s, rate_known=not math.isnan(flow.bytes_per_second))


def port_stats_pb(port: PortStatsView) -> pb.PortStats:
    c, r = port.counters, port.rates
    return pb.PortStats(
        dpid=port.dpid, port_no=port.port_no, rx_packets=c[0], tx_packets=c[1], rx_bytes=c[2],
        tx_bytes=c[3], rx_dropped=c[4], tx_dropped=c[5], rx_errors=c[6], tx_errors=c[7],
        rx_packets_per_second=_rate(r[0]), tx_packets_per_second=_rate(r[1]),
        rx_bytes_per_second=_rate(r[2]), tx_bytes_per_second=_rate(r[3]),
        rx_dropped_per_second=_rate(r[4]), tx_dropped_per_second=_rate(r[5]),
        rx_errors_per_second=_rate(r[6]), tx_errors_per_second=_rate(r[7]),
        rate_known=not math.isnan(r[0]))


def meter_stats_pb(meter: MeterStatsView, config=None) -> pb.MeterStats:
    """A meter's counters and rates, and its configured drop band (a MeterSpec) if known."""
    c, r = meter.counters, meter.rates
    return pb.MeterStats(
        rate_kbps=config.rate_kbps if config else 0,
        burst_kbits=config.burst_kbits if config else 0,
        dpid=meter.dpid, meter_id=meter.meter_id, flow_count=meter.flow_count,
        packets_in=c[0], bytes_in=c[1], band_packets=c[2], band_bytes=c[3],
        packets_in_per_second=_rate(r[0]), bytes_in_per_second=_rate(r[1]),
        band_packets_per_second=_rate(r[2]), band_bytes_per_second=_rate(r[3]),
        rate_known=not math.isnan(r[0]))


def event_pb(item) -> pb.Event | None:
    """A domain event -> Event message, or None for things watchers do not see."""
    if isinstance(item, SwitchChanged):
        return pb.Event(time_unix_s=item.time_unix_s, kind=pb.EVENT_KIND_SWITCH,
                        switch=pb.SwitchEvent(dpid=item.dpid, up=item.up, address=item.address))
    if isinstance(item, LinkChanged):
        return pb.Event(time_unix_s=item.time_unix_s, kind=pb.EVENT_KIND_LINK,
                        link=pb.LinkEvent(link=link_pb(item.link), up=item.up))
    if isinstance(item, HostLearned):
        return pb.Event(time_unix_s=item.time_unix_s, kind=pb.EVENT_KIND_HOST,
                        host=pb.HostEvent(host=host_pb(item.host)))
    if isinstance(item, PortChanged):
        return pb.Event(time_unix_s=item.time_unix_s, kind=pb.EVENT_KIND_PORT,
                        port=pb.PortEvent(port=port_pb(item.dpid, item.port, item.edge)))
    if isinstance(item, FlowRates):
        return pb.Event(time_unix_s=item.time_unix_s, kind=pb.EVENT_KIND_FLOW_RATES,
                        flow_rates=pb.FlowRatesEvent(dpid=item.dpid,
                                                     flows=[flow_pb(f) for f in item.flows]))
    if isinstance(item, KpiRecords):
        return pb.Event(time_unix_s=item.time_unix_s, kind=pb.EVENT_KIND_KPI,
                        kpi=pb.KpiEvent(records=[kpi_record_pb(r) for r in item.records]))
    return None


# -- probes -------------------------------------------------------------------------------
def kpi_record_pb(r: KpiRecord, age_s: float = 0.0) -> probe_pb2.FlowRecord:
    return probe_pb2.FlowRecord(
        src=r.src, dst=r.dst, proto=r.proto, sport=r.sport, dport=r.dport, kind=r.kind,
        interval_start_unix_s=r.interval_start_unix_s,
        interval_end_unix_s=r.interval_end_unix_s,
        packets=r.packets, bytes=r.bytes, throughput_bps=r.throughput_bps, dscp=r.dscp,
        kpis=r.kpis, probe_id=r.probe_id, customer_id=r.customer_id, service=r.service,
        age_s=age_s, application=r.application, category=r.category,
        detected_by=r.detected_by, service_method=r.service_method)


def record_from_pb(probe_id: str, m: probe_pb2.FlowRecord) -> KpiRecord:
    return KpiRecord(m.probe_id or probe_id, m.src, m.dst, m.proto, m.sport, m.dport, m.kind,
                     m.interval_start_unix_s, m.interval_end_unix_s, m.packets, m.bytes,
                     m.throughput_bps, m.dscp, dict(m.kpis),
                     application=validation.truncated(m.application, 64),
                     category=validation.truncated(m.category, 64),
                     detected_by=validation.truncated(m.detected_by, 16))


def health_from_pb(probe_id: str, m: probe_pb2.ProbeHealth) -> ProbeHealth:
    """A probe's counters; they saturate at 2^63-1 and the source is cut to 200 characters."""
    s = validation.saturated
    when = m.time_unix_s if math.isfinite(m.time_unix_s) else 0.0
    return ProbeHealth(m.probe_id or probe_id, when, validation.truncated(m.source, 200),
                       s(m.frames), s(m.malformed), s(m.kernel_received), s(m.kernel_dropped),
                       s(m.flows_tracked), s(m.flows_evicted), s(m.export_dropped),
                       validation.truncated(m.hot_path, 20))


def health_pb(h: ProbeHealth) -> probe_pb2.ProbeHealth:
    return probe_pb2.ProbeHealth(
        probe_id=h.probe_id, time_unix_s=h.time_unix_s, source=h.source, frames=h.frames,
        malformed=h.malformed, kernel_received=h.kernel_received,
        kernel_dropped=h.kernel_dropped, flows_tracked=h.flows_tracked,
        flows_evicted=h.flows_evicted, export_dropped=h.export_dropped, hot_path=h.hot_path)


def stamp_spec_from_pb(m: probe_pb2.StampTestSpec) -> StampSpec:
    return StampSpec(m.test_id, m.sender_probe_id, m.reflector_address,
                     m.reflector_port or DEFAULT_PORT, m.count, m.interval_s or 0.01,
                     m.report_interval_s or 1.0)


def stamp_spec_pb(s: StampSpec) -> probe_pb2.StampTestSpec:
    return probe_pb2.StampTestSpec(
        test_id=s.test_id, sender_probe_id=s.sender_probe_id,
        reflector_address=s.reflector_address, reflector_port=s.reflector_port, count=s.count,
        interval_s=s.interval_s, report_interval_s=s.report_interval_s)


def stamp_test_pb(test: TestState, latest: KpiRecord | None) -> probe_pb2.StampTest:
    reply = probe_pb2.StampTest(spec=stamp_spec_pb(test.spec), state=test.state,
                                started_unix_s=test.started_unix_s)
    if latest is not None:
        reply.latest.CopyFrom(kpi_record_pb(latest))
    return reply


def mirror_rule_pb(rule: MirrorRule) -> probe_pb2.MirrorRule:
    return probe_pb2.MirrorRule(customer_id=rule.customer_id, service=rule.service,
                                sample_percent=rule.sample_percent, origin=rule.origin)


def mirror_rule_from_pb(m: probe_pb2.MirrorRule) -> MirrorRule:
    return MirrorRule(m.customer_id, m.service, m.sample_percent or 100)


# -- customer service management ---------------------------------------------------------
_CLASS_TO_PB = {ServiceClass.GOLD: customer_pb2.SERVICE_CLASS_GOLD,
                ServiceClass.SILVER: customer_pb2.SERVICE_CLASS_SILVER,
                ServiceClass.BRONZE: customer_pb2.SERVICE_CLASS_BRONZE}
_PB_TO_CLASS = {v: k for k, v in _CLASS_TO_PB.items()}
_PB_TO_ROLE = {customer_pb2.ROLE_DOMAIN_MANAGER: Role.DOMAIN_MANAGER,
               customer_pb2.ROLE_CUSTOMER: Role.CUSTOMER,
               customer_pb2.ROLE_PEER_DOMAIN: Role.PEER_DOMAIN,
               customer_pb2.ROLE_PROBE: Role.PROBE}
_ROLE_TO_PB = {v: k for k, v in _PB_TO_ROLE.items()}


def service_class_of(value: int) -> ServiceClass:
    if value not in _PB_TO_CLASS:
        raise rules.Refused("INVALID_ARGUMENT", f"service_class {value} is not one of "
                            "SERVICE_CLASS_GOLD, SERVICE_CLASS_SILVER, SERVICE_CLASS_BRONZE")
    return _PB_TO_CLASS[value]


def role_of(value: int) -> Role:
    if value not in _PB_TO_ROLE:
        raise rules.Refused("INVALID_ARGUMENT", "role must be ROLE_DOMAIN_MANAGER, "
                            "ROLE_CUSTOMER, ROLE_PEER_DOMAIN or ROLE_PROBE")
    return _PB_TO_ROLE[value]


def customer_pb(c: Customer) -> customer_pb2.Customer:
    return customer_pb2.Customer(customer_id=c.customer_id, name=c.name, segment=c.segment,
                                 vip=c.vip, access_dpid=c.access_dpid,
                                 access_port=c.access_port, hosts=list(c.hosts))


def customer_from_pb(m: customer_pb2.Customer) -> Customer:
    return Customer(m.customer_id, m.name, m.segment or "residential", m.vip, m.access_dpid,
                    m.access_port, tuple(h.lower() for h in m.hosts))


def sla_pb(s: Sla) -> customer_pb2.Sla:
    variant = GSB_VARIANTS.get(s.variant)
    included = variant.included_hours if variant else {}
    prices = variant.price_per_hour if variant else {}
    return customer_pb2.Sla(
        customer_id=s.customer_id, variant=s.variant,
        bounds=[customer_pb2.ClassBounds(service_class=_CLASS_TO_PB[c], min_bps=b.min_bps,
                                         max_bps=b.max_bps, included_hours=included.get(c),
                                         price_per_hour=prices.get(c, 0.0))
                for c, b in s.bounds.items()],
        availability_target=s.availability_target,
        min_change_interval_s=s.min_change_interval_s)


def sla_from_pb(m: customer_pb2.Sla, customer_id: str) -> Sla:
    bounds = {}
    for b in m.bounds:
        service_class = service_class_of(b.service_class)
        if service_class in bounds:
            raise rules.Refused("INVALID_ARGUMENT", f"{service_class.value} bounds given twice")
        bounds[service_class] = ClassBounds(b.min_bps, b.max_bps)
    return Sla(customer_id, m.variant, bounds, m.availability_target or 0.999,
               m.min_change_interval_s)


def sls_pb(s: Sls) -> customer_pb2.Sls:
    return customer_pb2.Sls(customer_id=s.customer_id, service_class=_CLASS_TO_PB[s.service_class],
                            rate_bps=s.rate_bps, changed_unix_s=s.changed_unix_s)


def _optional(value):
    """None (absent in the message) for a figure that is not known (None or NaN)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def report_pb(report: CustomerReport) -> customer_pb2.GetReportResponse:
    target = report.target
    return customer_pb2.GetReportResponse(
        customer_id=report.customer_id, start_unix_s=report.start_unix_s,
        end_unix_s=report.end_unix_s, variant=report.variant,
        current_sls=sls_pb(report.current),
        classes=[customer_pb2.ClassHours(service_class=_CLASS_TO_PB[c], hours=h,
                                         charge=report.charges[c])
                 for c, h in report.hours.items()],
        total_charge=report.total_charge, availability=_optional(report.availability),
        availability_target=report.availability_target,
        availability_met=report.availability_met,
        throughput_bps=_optional(report.throughput_bps),
        policed_ratio=_optional(report.policed_ratio),
        delay_ms=report.delay_ms, jitter_ms=report.jitter_ms, loss_ratio=report.loss_ratio,
        target_delay_ms=target.delay_ms, target_jitter_ms=target.jitter_ms,
        target_loss_ratio=target.loss_ratio, target_source=target.source,
        unknown=list(report.unknown),
        throughput_since_unix_s=_optional(report.throughput_since_unix_s),
        delay_source=report.delay_source,
        measured_since_unix_s=_optional(report.measured_since_unix_s),
        quality=[customer_pb2.ServiceQuality(
            service=q.service, scale=q.scale, model=q.model, intervals=q.intervals,
            unknown=q.unknown, mean=q.mean, worst=q.worst, p5=q.p5,
            time_below_target_s=q.time_below_target_s, target=q.target.minimum,
            target_source=q.target.source, bound=q.bound) for q in report.quality],
        not_met=list(report.not_met))


def token_pb(t: TokenInfo) -> customer_pb2.TokenInfo:
    return customer_pb2.TokenInfo(token_id=t.token_id, role=_ROLE_TO_PB[t.role],
                                  customer_id=t.customer_id, probe_id=t.probe_id,
                                  created_unix_s=t.created_unix_s,
                                  expires_unix_s=t.expires_unix_s or 0.0)


# -- experience ---------------------------------------------------------------------------
def _finite(value) -> float:
    return float(value) if value is not None else math.nan


def quality_pb(q) -> "qoe_pb2.Quality":
    from cems.v1 import qoe_pb2  # pylint: disable=import-outside-toplevel
    if q is None:
        return qoe_pb2.Quality(known=False, missing=["no quality sample yet"])
    return qoe_pb2.Quality(
        known=q.known, score=q.score if q.known else math.nan, scale=q.scale, model=q.model,
        inputs={k: float(v) for k, v in q.inputs.items()}, missing=list(q.missing),
        extrapolated=list(q.extrapolated), assumptions=list(q.assumptions), bound=q.bound,
        details={k: float(v) for k, v in q.details.items()})


def service_experience_pb(e, history=()) -> "qoe_pb2.ServiceExperience":
    from cems.v1 import qoe_pb2  # pylint: disable=import-outside-toplevel
    return qoe_pb2.ServiceExperience(
        history=[qoe_pb2.HistoryPoint(start_unix_s=h.start_unix_s, mean=h.mean, worst=h.worst,
                                      samples=h.samples) for h in history],
        customer_id=e.customer_id, service=e.service, service_class=e.service_class,
        segment=e.segment, status=e.status.status, status_since_unix_s=e.status.since_unix_s,
        status_reason=e.status.reason, target=e.target.minimum,
        target_source=e.target.source, latest=quality_pb(e.latest),
        windows=[qoe_pb2.WindowFigures(
            window_s=w.window_s, count=w.count, unknown=w.unknown, mean=w.mean, worst=w.worst,
            p5=w.p5, p50=w.p50, p95=w.p95, time_below_target_s=w.time_below_s)
            for w in e.windows])


def finding_pb(f) -> "qoe_pb2.Finding":
    from cems.v1 import qoe_pb2  # pylint: disable=import-outside-toplevel
    return qoe_pb2.Finding(element=f.element, score=f.score, evidence=list(f.evidence),
                           affected_customers=list(f.affected_customers),
                           services=list(f.services), time_unix_s=f.time_unix_s,
                           inputs={k: float(v) for k, v in f.inputs.items()})


def zoom_pb(zoom, active: bool, mirror: str = "", stamp_test_id: str = "") -> "qoe_pb2.Zoom":
    from cems.v1 import qoe_pb2  # pylint: disable=import-outside-toplevel
    return qoe_pb2.Zoom(customer_id=zoom.customer_id, active=active, reason=zoom.reason,
                        mirror=mirror, stamp_test_id=stamp_test_id)


def experience_event_pb(item):
    """A domain event -> ExperienceEvent, or None for the others."""
    from cems.v1 import qoe_pb2  # pylint: disable=import-outside-toplevel
    from controller.events import (  # pylint: disable=import-outside-toplevel
        ExperienceChanged, FindingPublished, ZoomChanged)
    if isinstance(item, ExperienceChanged):
        c = item.change
        return qoe_pb2.ExperienceEvent(time_unix_s=item.time_unix_s, status=qoe_pb2.StatusChange(
            customer_id=c.customer_id, service=c.service, before=c.before,
            after=c.after.status, reason=c.after.reason))
    if isinstance(item, FindingPublished):
        return qoe_pb2.ExperienceEvent(time_unix_s=item.time_unix_s,
                                       finding=finding_pb(item.finding))
    if isinstance(item, ZoomChanged):
        return qoe_pb2.ExperienceEvent(time_unix_s=item.time_unix_s, zoom=zoom_pb(
            item.event.zoom, item.event.active, item.mirror, item.stamp_test_id))
    return None
