"""Prometheus metrics of the controller (shell: prometheus-client objects on a passed registry).

Label sets stay bounded: per switch, per port and per cems component; per-flow and
per-customer detail is in the gRPC API.
"""

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from controller.config import Address
from controller.events import PORT_COUNTERS, FlowView, PortStatsView


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.switches = Gauge("cems_switches_connected", "Switches connected now",
                              registry=registry)
        self.links = Gauge("cems_links", "Inter-switch links (one per direction)",
                           registry=registry)
        self.hosts = Gauge("cems_hosts", "Hosts learned", registry=registry)
        self.flows = Gauge("cems_flows", "cems flows on a switch", ["dpid"], registry=registry)
        self.flow_bytes = Gauge("cems_flow_bytes_per_second",
                                "Sum of flow byte rates on a switch per cems component",
                                ["dpid", "component"], registry=registry)
        self.port_rate = Gauge("cems_port_rate_per_second",
                               "Port counter rates from counter deltas",
                               ["dpid", "port", "counter"], registry=registry)
        self.port_up = Gauge("cems_port_up", "1 when the port is up", ["dpid", "port"],
                             registry=registry)
        self.openflow_errors = Counter("cems_openflow_errors_total",
                                       "OpenFlow error messages received",
                                       ["dpid", "type"], registry=registry)
        self.packet_in = Counter("cems_packet_in_total", "Packet-ins handled", ["dpid"],
                                 registry=registry)
        self.packet_in_malformed = Counter("cems_packet_in_malformed_total",
                                           "Packet-ins that could not be decoded", ["dpid"],
                                           registry=registry)
        self.flow_changes = Counter("cems_flow_changes_total",
                                    "Flow adds and deletes sent by reconciliation",
                                    ["dpid", "kind"], registry=registry)

    def update_flows(self, dpid: int, flows: tuple[FlowView, ...]) -> None:
        label = f"{dpid:016x}"
        self.flows.labels(label).set(len(flows))
        totals: dict[str, float] = {}
        for flow in flows:
            component = flow.entry.component
            name = component.name.lower() if component else "other"
            rate = 0.0 if math.isnan(flow.bytes_per_second) else flow.bytes_per_second
            totals[name] = totals.get(name, 0.0) + rate
        for name, rate in totals.items():
            self.flow_bytes.labels(label, name).set(rate)

    def update_ports(self, dpid: int, ports: tuple[PortStatsView, ...]) -> None:
        label = f"{dpid:016x}"
        for port in ports:
            for name, rate in zip(PORT_COUNTERS, port.rates):
                if not math.isnan(rate):
                    self.port_rate.labels(label, str(port.port_no), name).set(rate)

    def forget_switch(self, dpid: int) -> None:
        label = f"{dpid:016x}"
        for gauge in (self.flows, self.flow_bytes, self.port_rate, self.port_up):
            for labels in list(gauge._metrics):  # pylint: disable=protected-access
                if labels[0] == label:
                    gauge.remove(*labels)


def serve_metrics(registry: CollectorRegistry, address: Address):
    """Start the HTTP exporter; returns (server, thread) so the caller can shut it down."""
    return start_http_server(address.port, addr=address.host, registry=registry)
