"""Prometheus metrics of the controller (shell: prometheus-client objects on a passed registry).

Label sets stay bounded: per switch, per port, per cems component, per probe, per service,
class and segment, and per customer only for VIP customers (at most MAX_VIP_SERIES); per-flow
and per-customer detail is in the gRPC API.
"""

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from controller.config import Address
from controller.events import PORT_COUNTERS, FlowView, PortStatsView
from controller.monitor.kpis import COUNTED_KPIS, SUMMARY_KPIS, KpiStore, summarise_by_service


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.switches = Gauge("cems_switches_connected", "Switches connected now",
                              registry=registry)
        self.switch_connected = Gauge("cems_switch_connected", "1 while the switch is "
                                      "connected, 0 after it disconnected (every switch seen "
                                      "since the controller started)", ["dpid"],
                                      registry=registry)
        self.links = Gauge("cems_links", "Inter-switch links (one per direction)",
                           registry=registry)
        self.hosts = Gauge("cems_hosts", "Hosts learned", registry=registry)
        self.flows = Gauge("cems_flows", "cems flows on a switch", ["dpid"], registry=registry)
        self.flow_bytes = Counter("cems_flow_bytes_total",
                                  "Bytes counted by the cems flows on a switch, per cems "
                                  "component (the sum of each flow's counter increases "
                                  "between polls; rate() gives bytes per second)",
                                  ["dpid", "component"], registry=registry)
        self.flow_packets = Counter("cems_flow_packets_total",
                                    "Packets counted by the cems flows on a switch, per cems "
                                    "component", ["dpid", "component"], registry=registry)
        self._flow_counts: dict[int, dict] = {}   # dpid -> {FlowEntry: (packets, bytes)}
        self._ports: dict[int, tuple[PortStatsView, ...]] = {}  # dpid -> latest reply
        self._speeds: dict[tuple[int, int], int] = {}           # (dpid, port) -> bit/s
        registry.register(_PortCollector(self))
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
        self.policy_capped = Counter("cems_policy_capped_total",
                                     "Policy changes refused because the engine was at its "
                                     "cap (policy.max_changes_per_minute, or customers per "
                                     "evaluation)", registry=registry)
        self.policy_max_changes = Gauge("cems_policy_max_changes_per_minute",
                                        "The policy engine's cap on changes in any minute "
                                        "(policy.max_changes_per_minute)", registry=registry)
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

    def set_connected(self, dpids) -> None:
        """The switches connected now; those seen before and gone read 0."""
        now = {f"{dpid:016x}" for dpid in dpids}
        seen = {labels[0] for labels in list(self.switch_connected._metrics)}  # pylint: disable=protected-access
        for label in now | seen:
            self.switch_connected.labels(label).set(1 if label in now else 0)

    def update_flows(self, dpid: int, flows: tuple[FlowView, ...]) -> None:
        """Count what each flow counted since the last reply: a flow new to the reply
        counts all of its counters (it was installed since), a flow whose counters went
        down was re-installed and counts from zero."""
        label = f"{dpid:016x}"
        self.flows.labels(label).set(len(flows))
        before = self._flow_counts.get(dpid, {})
        now: dict = {}
        totals: dict[str, list[int]] = {}
        for flow in flows:
            component = flow.entry.component
            name = component.name.lower() if component else "other"
            packets, bytes_ = flow.packet_count, flow.byte_count
            old = before.get(flow.entry)
            if old is not None and packets >= old[0] and bytes_ >= old[1]:
                packets, bytes_ = packets - old[0], bytes_ - old[1]
            now[flow.entry] = (flow.packet_count, flow.byte_count)
            total = totals.setdefault(name, [0, 0])
            total[0] += packets
            total[1] += bytes_
        self._flow_counts[dpid] = now
        for name, (packets, bytes_) in totals.items():
            self.flow_packets.labels(label, name).inc(packets)
            self.flow_bytes.labels(label, name).inc(bytes_)

    def update_ports(self, dpid: int, ports: tuple[PortStatsView, ...]) -> None:
        self._ports[dpid] = ports

    def set_port_speed(self, dpid: int, port_no: int, speed_bps: int) -> None:
        """The port's current speed as the switch reports it (0: unknown)."""
        if speed_bps > 0:
            self._speeds[(dpid, port_no)] = speed_bps
        else:
            self._speeds.pop((dpid, port_no), None)

    def forget_switch(self, dpid: int) -> None:
        label = f"{dpid:016x}"
        for metric in (self.flows, self.flow_bytes, self.flow_packets, self.port_up):
            for labels in list(metric._metrics):  # pylint: disable=protected-access
                if labels[0] == label:
                    metric.remove(*labels)
        self._flow_counts.pop(dpid, None)
        self._ports.pop(dpid, None)
        for key in [k for k in self._speeds if k[0] == dpid]:
            del self._speeds[key]


UNAVAILABLE = (1 << 64) - 1   # OpenFlow's "counter not available" (all ones)

# PORT_COUNTERS name -> (metric, direction, help)
_PORT_METRICS = {
    "rx_bytes": ("cems_port_bytes", "rx", "Bytes through the port, as the switch counts them"),
    "tx_bytes": ("cems_port_bytes", "tx", ""),
    "rx_packets": ("cems_port_packets", "rx", "Packets through the port"),
    "tx_packets": ("cems_port_packets", "tx", ""),
    "rx_dropped": ("cems_port_dropped_packets", "rx", "Packets the port dropped"),
    "tx_dropped": ("cems_port_dropped_packets", "tx", ""),
    "rx_errors": ("cems_port_errors", "rx", "Packets with errors on the port"),
    "tx_errors": ("cems_port_errors", "tx", ""),
}


class _PortCollector:
    """Port counters as each switch last reported them (counters that the switch restarts
    when a port is re-created; rate() copes), and port speeds in bytes per second."""

    def __init__(self, metrics: ControllerMetrics):
        self.metrics = metrics

    def describe(self):
        return []

    def collect(self):
        families: dict[str, CounterMetricFamily] = {}
        for counter, (name, _direction, text) in _PORT_METRICS.items():
            if name not in families:
                families[name] = CounterMetricFamily(
                    name, text + " (direction: rx or tx)", labels=["dpid", "port", "direction"])
        for dpid, ports in sorted(dict(self.metrics._ports).items()):  # pylint: disable=protected-access
            label = f"{dpid:016x}"
            for port in ports:
                for counter, value in zip(PORT_COUNTERS, port.counters):
                    if value >= UNAVAILABLE:
                        continue   # not counted by this switch, or a port being torn down
                    name, direction, _ = _PORT_METRICS[counter]
                    families[name].add_metric([label, str(port.port_no), direction], value)
        yield from families.values()
        speed = GaugeMetricFamily("cems_port_speed_bytes", "The port's current speed as "
                                  "the switch reports it, in bytes per second (ports that "
                                  "report none are absent)", labels=["dpid", "port"])
        for (dpid, port_no), bps in sorted(dict(self.metrics._speeds).items()):  # pylint: disable=protected-access
            speed.add_metric([f"{dpid:016x}", str(port_no)], bps / 8)
        yield speed


class KpiCollector:
    """Probe KPIs at scrape time, from the KpiStore: per service the number of flows, the
    counters of what the probes counted (bytes, packets, losses, errors) and the mean and
    worst of each KPI over each flow's latest record, in its base unit; per probe its own
    counters (frames, kernel drops, evictions); and the record totals."""

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
        totals = sorted(dict(self.kpis.service_totals).items())
        for i, (name, text) in enumerate(_KPI_COUNTERS):
            family = CounterMetricFamily(name, text, labels=["service"])
            for service, values in totals:
                family.add_metric([service], values[i])
            yield family
        summary = summarise_by_service(self.kpis.latest())
        flows = GaugeMetricFamily("cems_kpi_flows", "Flows with a probe record, per service",
                                  labels=["service"])
        gauges = {key: GaugeMetricFamily(name, text + " per service over each flow's latest "
                                         "record: mean and worst (stat)",
                                         labels=["service", "stat"])
                  for key, (name, _scale, text) in _KPI_GAUGES.items()}
        for service, entry in sorted(summary.items()):
            flows.add_metric([service], entry["flows"])
            for key, (_name, scale, _text) in _KPI_GAUGES.items():
                if key in entry:
                    mean, worst = entry[key]
                    gauges[key].add_metric([service, "mean"], mean * scale)
                    gauges[key].add_metric([service, "worst"], worst * scale)
        yield flows
        yield from gauges.values()


# Counters summed per service over accepted records: KpiStore.service_totals's columns
_KPI_COUNTERS = (
    ("cems_kpi_bytes", "Bytes of the probed flows (what the probes counted)"),
    ("cems_kpi_packets", "Packets of the probed flows"),
    ("cems_kpi_rtp_lost_packets", "RTP packets lost"),
    ("cems_kpi_ts_cc_errors", "MPEG-TS continuity count errors"),
    ("cems_kpi_tcp_retransmissions", "TCP retransmissions"),
    ("cems_kpi_stamp_lost_packets", "STAMP test packets lost"))
assert len(_KPI_COUNTERS) == 2 + len(COUNTED_KPIS)

# SUMMARY_KPIS key -> (metric, scale to its base unit, help): one unit per metric
_KPI_GAUGES = {
    "rtp_loss_ratio": ("cems_kpi_rtp_loss_ratio", 1.0, "RTP loss (ratio)"),
    "rtp_jitter_ms": ("cems_kpi_rtp_jitter_seconds", 1e-3, "RTP interarrival jitter"),
    "mdi_df_ms": ("cems_kpi_mdi_delay_factor_seconds", 1e-3, "MDI delay factor (RFC 4445)"),
    "mdi_mlr_pps": ("cems_kpi_mdi_media_loss_rate", 1.0,
                    "MDI media loss rate, media packets lost per second (RFC 4445's KPI)"),
    "tcp_rtt_ms": ("cems_kpi_tcp_rtt_seconds", 1e-3, "TCP round-trip time"),
    "stamp_rtt_ms": ("cems_kpi_stamp_rtt_seconds", 1e-3, "STAMP round-trip time"),
    "stamp_loss_ratio": ("cems_kpi_stamp_loss_ratio", 1.0, "STAMP loss (ratio)"),
    "stamp_jitter_ms": ("cems_kpi_stamp_jitter_seconds", 1e-3, "STAMP jitter"),
}
assert set(_KPI_GAUGES) <= set(SUMMARY_KPIS)   # event counts are counters instead


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


class ClusterCollector:
    """With a cluster: whether this instance is the leader (its policy engine acts), how
    many switches it is master of, how many instances hold their etcd lease, and how long
    ago this one renewed its own."""

    def __init__(self, leadership):
        self.leadership = leadership  # controller.cluster.leader.Leadership

    def describe(self):
        return []

    def collect(self):
        leadership = self.leadership
        yield GaugeMetricFamily("cems_cluster_master", "1 while this instance is the "
                                "cluster's leader: its policy engine acts",
                                value=1.0 if leadership.leader else 0.0)
        yield GaugeMetricFamily("cems_cluster_instances", "Instances holding their etcd "
                                "lease, as this one last saw", value=len(leadership.members))
        yield GaugeMetricFamily("cems_cluster_switches", "Switches this instance is master "
                                "of", value=len(leadership.switches))
        if leadership.partitions:
            yield GaugeMetricFamily("cems_cluster_partitions", "Customer partitions whose "
                                    "records this instance takes (their quality it computes)",
                                    value=len(leadership.taking))
        age = leadership.lease_age_s()
        if age == age:
            yield GaugeMetricFamily("cems_cluster_lease_age_seconds", "Seconds since this "
                                    "instance last renewed its etcd lease", value=age)


class StreamCollector:
    """With records.nats: what this instance's consumer of the records stream took, refused
    and has yet to read (its lag)."""

    def __init__(self, stream):
        self.stream = stream  # controller.stream.RecordStream

    def describe(self):
        return []

    def collect(self):
        stream = self.stream
        yield GaugeMetricFamily("cems_stream_connected", "1 while this instance reads the "
                                "probe records stream", value=0.0 if stream.problem else 1.0)
        messages = CounterMetricFamily("cems_stream_messages", "Messages (batches of "
                                       "records) of the records stream, by what became of "
                                       "them", labels=["outcome"])
        for outcome in ("taken", "duplicate", "rejected", "failed"):
            messages.add_metric([outcome], stream.messages[outcome])
        yield messages
        rejected = CounterMetricFamily("cems_stream_rejected_messages", "Messages of the "
                                       "records stream refused before anything was taken, "
                                       "by reason", labels=["reason"])
        for reason, count in sorted(stream.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        yield CounterMetricFamily("cems_stream_records", "Records taken from the records "
                                  "stream", value=stream.records_taken)
        yield CounterMetricFamily("cems_stream_records_elsewhere", "Records of the records "
                                  "stream left to the instances holding their customers' "
                                  "partitions", value=stream.records_elsewhere)
        yield CounterMetricFamily("cems_stream_records_replayed", "Records replayed from the "
                                  "records stream for customer partitions this instance "
                                  "has just started taking", value=stream.records_replayed)
        yield CounterMetricFamily("cems_stream_replay_failures", "Replays for partitions "
                                  "just taken that failed (their customers' quality starts "
                                  "from the next records)", value=stream.replay_failures)
        if stream.lag_checked_unix_s:
            yield GaugeMetricFamily("cems_stream_pending_messages", "Messages in the records "
                                    "stream not yet delivered to this instance's consumer",
                                    value=stream.pending)
            yield GaugeMetricFamily("cems_stream_ack_pending_messages", "Messages delivered "
                                    "to this instance's consumer, not yet acknowledged",
                                    value=stream.ack_pending)


def serve_metrics(registry: CollectorRegistry, address: Address):
    """Start the HTTP exporter; returns (server, thread) so the caller can shut it down."""
    return start_http_server(address.port, addr=address.host, registry=registry)
