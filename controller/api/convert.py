"""Domain data (snapshots, events) -> cems.v1 protobuf messages (shell)."""

import math

from cems.v1 import probe_pb2
from cems.v1 import status_pb2 as pb

from controller.events import (FlowRates, FlowView, HostLearned, KpiRecords, LinkChanged,
                               MeterStatsView, PortChanged, PortStatsView, SwitchChanged)
from controller.kpis import KpiRecord
from controller.network.topology import HostInfo, LinkKey, PortInfo, TopologySnapshot
from controller.openflow.messages import format_actions, format_match


def port_pb(dpid: int, port: PortInfo, edge: bool) -> pb.Port:
    return pb.Port(dpid=dpid, port_no=port.port_no, name=port.name, hw_addr=port.hw_addr,
                   up=port.up, curr_speed_kbps=port.curr_speed_kbps,
                   max_speed_kbps=port.max_speed_kbps, edge=edge)


def link_pb(link: LinkKey) -> pb.Link:
    return pb.Link(src_dpid=link.src_dpid, src_port=link.src_port, dst_dpid=link.dst_dpid,
                   dst_port=link.dst_port)


def host_pb(host: HostInfo) -> pb.Host:
    return pb.Host(mac=host.mac, ipv4=list(host.ipv4), dpid=host.dpid, port_no=host.port_no)


def topology_pb(topology: TopologySnapshot, connected: frozenset[int]) -> pb.GetTopologyResponse:
    link_ports = {(l.src_dpid, l.src_port) for l in topology.links}
    link_ports |= {(l.dst_dpid, l.dst_port) for l in topology.links}
    switches = [pb.Switch(dpid=s.dpid, dpid_hex=f"{s.dpid:016x}", connected=s.dpid in connected,
                          address=s.address,
                          ports=[port_pb(s.dpid, p, (s.dpid, p.port_no) not in link_ports)
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


def meter_stats_pb(meter: MeterStatsView) -> pb.MeterStats:
    c, r = meter.counters, meter.rates
    return pb.MeterStats(
        dpid=meter.dpid, meter_id=meter.meter_id, flow_count=meter.flow_count,
        packets_in=c[0], bytes_in=c[1], band_packets=c[2], band_bytes=c[3],
        packets_in_per_second=_rate(r[0]), bytes_in_per_second=_rate(r[1]),
        band_packets_per_second=_rate(r[2]), band_bytes_per_second=_rate(r[3]),
        rate_known=not math.isnan(r[0]))


def kpi_record_pb(r: KpiRecord) -> probe_pb2.FlowRecord:
    return probe_pb2.FlowRecord(
        src=r.src, dst=r.dst, proto=r.proto, sport=r.sport, dport=r.dport, kind=r.kind,
        interval_start_unix_s=r.start_unix_s, interval_end_unix_s=r.end_unix_s,
        packets=r.packets, bytes=r.bytes, throughput_bps=r.throughput_bps, dscp=r.dscp,
        kpis=r.kpis, probe_id=r.probe_id, customer_id=r.customer_id, service=r.service)


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
