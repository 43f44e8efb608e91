"""Prometheus metrics of the controller (shell: prometheus-client objects on a passed registry).

Label sets stay bounded: per switch, per port, per cems component, per probe, per service,
class and segment, and per customer only for VIP customers (at most MAX_VIP_SERIES); per-flow
and per-customer detail is in the gRPC API.
"""

import math
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from controller.config import Address
from controller.events import PORT_COUNTERS, FlowView, PortStatsView
from controller.monitor.kpis import SUMMARY_KPIS, KpiStore, summarise_by_service


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
        self.flow_stats_entries = Counter(
            "cems_flow_stats_entries_total", "Flow stats entries by how they were decoded: "
            "remembered (as the switch's last reply had them), decoded (from their bytes) or "
            "framework (something the wire decoder leaves to the framework's parser)",
            ["dpid", "how"], registry=registry)
        self.handler_errors = Counter("cems_handler_errors_total",
                                      "Event handlers that raised (caught; the controller "
                                      "goes on)", ["handler"], registry=registry)
        self.send_errors = Counter("cems_send_errors_total",
                                   "Messages to a switch that could not be built or sent",
                                   ["dpid"], registry=registry)
        self.serving = Gauge("cems_serving", "1 while the controller does its work (see "
                             "GetStatus problems when 0)", registry=registry)
        self.serving.set(1)
        self.flow_changes = Counter("cems_flow_changes_total",
                                    "Flow adds and deletes sent by reconciliation",
                                    ["dpid", "kind"], registry=registry)
        self.policy_in_force = Gauge("cems_policy_actions_in_force",
                                     "Policy actions on the network now (not dry-run ones)",
                                     registry=registry)
        self.policy_decisions = Counter("cems_policy_decisions_total",
                                        "Policy decisions by kind: act, refuse, revert, "
                                        "rollback, outcome", ["kind"], registry=registry)
        self.policy_store_errors = Counter("cems_policy_store_errors_total",
                                           "Decision batches or memories the store did not "
                                           "take (kept in memory only)", registry=registry)
        self.policy_admissions = Counter("cems_policy_admissions_total",
                                         "Sessions applications asked to start, by result "
                                         "(admitted, refused) and service",
                                         ["result", "service"], registry=registry)
        self.policy_twin_error = Gauge("cems_policy_twin_mean_abs_error",
                                       "Mean absolute error of the twin's predicted scores "
                                       "against those observed after actions (MOS)",
                                       registry=registry)

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


class KpiCollector:
    """Probe KPIs at scrape time, from the KpiStore: per service the number of flows, their
    total throughput and the mean and worst of each KPI over each flow's latest record; per
    probe its own counters (frames, kernel drops, evictions); and the record totals."""

    def __init__(self, kpis: KpiStore):
        self.kpis = kpis

    def describe(self):
        return []  # collected on demand; nothing to check at registration

    def collect(self):
        records = CounterMetricFamily("cems_probe_records", "Probe records received",
                                      labels=["outcome"])
        records.add_metric(["accepted"], self.kpis.accepted_total)
        records.add_metric(["rejected"], self.kpis.rejected_total)
        records.add_metric(["dropped_by_probe"], self.kpis.probe_dropped_total)
        yield records
        probe_counters = {
            "frames": "Frames the probe processed",
            "malformed": "Frames the probe could not decode",
            "kernel_dropped": "Frames the kernel dropped before the probe saw them (ring full)",
            "flows_evicted": "Flows evicted from the probe's full flow table",
            "export_dropped": "Records the probe dropped because its export buffer was full"}
        probes = self.kpis.probes()
        for name, text in probe_counters.items():
            family = CounterMetricFamily(f"cems_probe_{name}", text, labels=["probe"])
            for health in probes:
                family.add_metric([health.probe_id], getattr(health, name))
            yield family
        summary = summarise_by_service(self.kpis.latest())
        flows = GaugeMetricFamily("cems_kpi_flows", "Flows with a probe record, per service",
                                  labels=["service"])
        rate = GaugeMetricFamily("cems_kpi_throughput_bits_per_second",
                                 "Total throughput of the probed flows, per service",
                                 labels=["service"])
        kpi = GaugeMetricFamily("cems_kpi", "Probe KPI per service over each flow's latest "
                                "record: mean and worst", labels=["service", "kpi", "stat"])
        for service, entry in sorted(summary.items()):
            flows.add_metric([service], entry["flows"])
            rate.add_metric([service], entry["throughput_bps"])
            for key in SUMMARY_KPIS:
                if key in entry:
                    mean, worst = entry[key]
                    kpi.add_metric([service, key, "mean"], mean)
                    kpi.add_metric([service, key, "worst"], worst)
        yield flows
        yield rate
        yield kpi


class GrpcCollector:
    """The gRPC server's refusals and streams at scrape time: requests refused before they
    reached a servicer (no or a wrong credential, or a role the method does not allow), by
    status code; streams open now and streams refused by the limits."""

    def __init__(self, server):
        self.server = server  # controller.api.server.GrpcServer

    def describe(self):
        return []

    def collect(self):
        refused = CounterMetricFamily("cems_grpc_refused", "Requests refused before a "
                                      "servicer: missing or wrong credential, or role",
                                      labels=["code"])
        by_code: dict[str, int] = {}
        if self.server.auth is not None:
            for (code, _method), n in list(self.server.auth.refusals.items()):
                by_code[code] = by_code.get(code, 0) + n
        for code, n in sorted(by_code.items()):
            refused.add_metric([code], n)
        yield refused
        limits = self.server.limits
        yield GaugeMetricFamily("cems_grpc_streams_open", "Streams open now (each holds a "
                                "worker)", value=limits.open_streams() if limits else 0)
        yield CounterMetricFamily("cems_grpc_streams_refused", "Streams refused by "
                                  "grpc.max_streams or grpc.max_streams_per_client",
                                  value=limits.refused_total if limits else 0)


MAX_VIP_SERIES = 1000   # VIP customers with series of their own; the rest are counted


class ExperienceCollector:
    """Experience at scrape time, bounded whatever the number of customers: per service,
    class and segment the customer-service pairs in each status, those whose 10 s mean is
    below target, the target, and the mean, worst and quantiles of the last 10 s of quality
    samples; per customer only for the customers marked VIP in their SLA (at most
    MAX_VIP_SERIES of them, the others counted in cems_experience_vip_left_out)."""

    def __init__(self, experience, directory, clock=time.time):
        self.experience = experience  # controller.monitor.engine.Experience
        self.directory = directory    # controller.monitor.directory.CustomerDirectory
        self.clock = clock

    def describe(self):
        return []

    def collect(self):
        now = self.clock()
        labels = ["service", "service_class", "segment"]
        pairs = GaugeMetricFamily("cems_experience_pairs", "Customer-service pairs per status",
                                  labels=labels + ["status"])
        below = GaugeMetricFamily("cems_experience_below_target", "Customer-service pairs "
                                  "whose 10 s mean quality is below the target", labels=labels)
        target = GaugeMetricFamily("cems_experience_target", "The quality target (MOS, or a "
                                   "ratio for bulk)", labels=labels)
        score = GaugeMetricFamily("cems_experience_score", "Quality samples of the last 10 s: "
                                  "mean, worst and quantiles (MOS, or a ratio for bulk)",
                                  labels=labels + ["stat"])
        for group in self.experience.book.summary(now):
            key = [group.service, group.service_class, group.segment]
            for status, n in group.statuses.items():
                pairs.add_metric(key + [status], n)
            below.add_metric(key, group.below_target)
            target.add_metric(key, group.target)
            figures = group.figures
            if figures.count:
                for stat in ("mean", "worst", "p5", "p50", "p95"):
                    score.add_metric(key + [stat], getattr(figures, stat))
        yield pairs
        yield below
        yield target
        yield score
        vip = self.directory.vip()
        shown, left_out = vip[:MAX_VIP_SERIES], max(0, len(vip) - MAX_VIP_SERIES)
        vip_score = GaugeMetricFamily("cems_experience_vip_score", "A VIP customer's 10 s "
                                      "mean quality per service", labels=["customer", "service"])
        vip_degraded = GaugeMetricFamily("cems_experience_vip_degraded", "1 while a VIP "
                                         "customer's service is degraded",
                                         labels=["customer", "service"])
        for view in self.experience.book.select(now, customers=shown):
            if view.score == view.score:
                vip_score.add_metric([view.customer_id, view.service], view.score)
            vip_degraded.add_metric([view.customer_id, view.service],
                                    1.0 if view.status.status == "degraded" else 0.0)
        yield vip_score
        yield vip_degraded
        yield GaugeMetricFamily("cems_experience_vip_left_out", f"VIP customers beyond the "
                                f"first {MAX_VIP_SERIES}, without series of their own",
                                value=left_out)
        yield GaugeMetricFamily("cems_findings", "Root-cause findings now",
                                value=len(self.experience.findings()))


def serve_metrics(registry: CollectorRegistry, address: Address):
    """Start the HTTP exporter; returns (server, thread) so the caller can shut it down."""
    return start_http_server(address.port, addr=address.host, registry=registry)
