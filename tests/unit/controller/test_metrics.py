"""The controller's metrics follow Prometheus conventions: counters of what switches and probes
counted, in bytes and seconds, rates left to PromQL; `promtool check metrics` finds nothing."""

import collections
import subprocess
import types

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller.events import FlowView, PortStatsView
from controller.metrics import ControllerMetrics, GrpcCollector, KpiCollector, UNAVAILABLE
from controller.monitor.kpis import KpiRecord, KpiStore, ProbeHealth
from controller.openflow.pipeline import Component, FlowEntry, cookie_for

from tests.unit.controller.test_experience_metrics import build

A = FlowEntry.make(0, 1000, {"eth_dst": "00:00:00:00:00:02"}, (("output", 2),),
                   cookie_for(Component.FORWARDING, "a"))
B = FlowEntry.make(0, 1000, {"eth_dst": "00:00:00:00:00:03"}, (("output", 3),),
                   cookie_for(Component.FORWARDING, "b"))
M = FlowEntry.make(0, 2000, {"eth_dst": "00:00:00:00:00:04"}, (("output", 4),),
                   cookie_for(Component.MIRROR, "m"))


def samples(registry) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for s in family.samples}


def flows(*rows):
    return tuple(FlowView(1, entry, packets, bytes_, 1.0) for entry, packets, bytes_ in rows)


def test_flow_counters_add_what_each_flow_counted_between_replies():
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    forwarding = ("cems_flow_bytes_total", (("component", "forwarding"),
                                            ("dpid", "0000000000000001")))
    metrics.update_flows(1, flows((A, 10, 1000), (M, 1, 60)))
    assert samples(registry)[forwarding] == 1000
    # A counted 500 more bytes; B is new (all of its 300 count); the mirror flow is gone
    metrics.update_flows(1, flows((A, 15, 1500), (B, 3, 300)))
    got = samples(registry)
    assert got[forwarding] == 1800
    assert got[("cems_flow_packets_total", forwarding[1])] == 18
    assert got[("cems_flow_bytes_total", (("component", "mirror"),
                                          ("dpid", "0000000000000001")))] == 60
    # A was re-installed (its counters restarted): its 200 bytes count from zero; the
    # counter never goes down
    metrics.update_flows(1, flows((A, 2, 200), (B, 3, 300)))
    assert samples(registry)[forwarding] == 2000
    metrics.forget_switch(1)
    assert forwarding not in samples(registry)


def test_port_counters_are_the_switchs_own_and_unavailable_ones_are_left_out():
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    # PORT_COUNTERS order: rx_packets tx_packets rx_bytes tx_bytes rx_dropped tx_dropped
    # rx_errors tx_errors; a port being torn down reports all ones
    metrics.update_ports(1, (PortStatsView(1, 2, (10, 20, 1000, 2000, 1, 0, UNAVAILABLE, 0),
                                           (float("nan"),) * 8),))
    metrics.set_port_speed(1, 2, 10_000_000)
    metrics.set_port_speed(1, 3, 0)   # speed unknown: no series
    got = samples(registry)
    port = (("dpid", "0000000000000001"), ("port", "2"))
    assert got[("cems_port_bytes_total", (("direction", "rx"),) + port)] == 1000
    assert got[("cems_port_bytes_total", (("direction", "tx"),) + port)] == 2000
    assert got[("cems_port_dropped_packets_total", (("direction", "rx"),) + port)] == 1
    assert ("cems_port_errors_total", (("direction", "rx"),) + port) not in got
    assert got[("cems_port_errors_total", (("direction", "tx"),) + port)] == 0
    assert got[("cems_port_speed_bytes", port)] == 1_250_000
    assert not any(key[0] == "cems_port_speed_bytes" and ("port", "3") in key[1] for key in got)
    metrics.forget_switch(1)
    assert not any(key[0].startswith("cems_port_") for key in samples(registry))


def test_a_switch_that_left_reads_zero_and_stays_listed():
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    metrics.set_connected({1, 2})
    metrics.set_connected({2})
    got = samples(registry)
    assert got[("cems_switch_connected", (("dpid", "0000000000000001"),))] == 0
    assert got[("cems_switch_connected", (("dpid", "0000000000000002"),))] == 1


def record(service_port: int, **kpis) -> KpiRecord:
    return KpiRecord("p1", "10.0.0.1", "10.0.0.2", 17, 4000, service_port, "rtp", 1.0, 2.0,
                     50, 10_000, 80_000.0, 46, kpis)


def test_probe_kpis_are_in_base_units_and_event_counts_are_counters():
    kpis = KpiStore()
    registry = CollectorRegistry()
    registry.register(KpiCollector(kpis))
    kpis.add([record(5004, rtp_jitter_ms=20.0, rtp_lost=3, rtp_loss_ratio=0.06)])
    kpis.add([record(5004, rtp_jitter_ms=10.0, rtp_lost=1, rtp_loss_ratio=0.02)])
    got = samples(registry)
    voice = (("service", "voice"),)
    assert got[("cems_kpi_rtp_jitter_seconds", voice + (("stat", "worst"),))] == 0.01
    assert got[("cems_kpi_rtp_lost_packets_total", voice)] == 4
    assert got[("cems_kpi_bytes_total", voice)] == 20_000


def full_registry() -> CollectorRegistry:
    """Every family the controller exports, each with samples."""
    from controller.metrics import ExperienceCollector  # pylint: disable=import-outside-toplevel
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    metrics.switches.set(1)
    metrics.set_connected({1})
    metrics.update_flows(1, flows((A, 10, 1000)))
    metrics.update_ports(1, (PortStatsView(1, 2, (1, 2, 3, 4, 0, 0, 0, 0), (0.0,) * 8),))
    metrics.set_port_speed(1, 2, 10_000_000)
    metrics.openflow_errors.labels("0000000000000001", "OFPET_BAD_REQUEST").inc()
    metrics.policy_decisions.labels("act").inc()
    metrics.policy_admissions.labels("admitted", "iptv").inc()
    metrics.flow_stats_entries.labels("0000000000000001", "decoded").inc()
    kpis = KpiStore()
    kpis.set_health(ProbeHealth(probe_id="p1", time_unix_s=1.0, frames=10))
    kpis.add([record(5004, rtp_jitter_ms=20.0, rtp_lost=3, rtp_loss_ratio=0.06)])
    registry.register(KpiCollector(kpis))
    experience, directory = build([("boss", True, 2.5)])
    registry.register(ExperienceCollector(experience, directory, clock=lambda: 20.0))
    server = types.SimpleNamespace(
        auth=types.SimpleNamespace(refusals=collections.Counter({("UNAUTHENTICATED", "m"): 1})),
        limits=types.SimpleNamespace(open_streams=lambda: 1, refused_total=0))
    registry.register(GrpcCollector(server))
    from controller.metrics import ClusterCollector  # pylint: disable=import-outside-toplevel
    registry.register(ClusterCollector(types.SimpleNamespace(
        leader=True, members=(("a", ""), ("b", "")), lease_age_s=lambda: 0.4,
        switches={1: 7, 2: 9}, partitions=16, taking=frozenset(range(8)))))
    from controller.metrics import StreamCollector  # pylint: disable=import-outside-toplevel
    registry.register(StreamCollector(types.SimpleNamespace(
        problem="", messages=collections.Counter(taken=5, rejected=1),
        rejected=collections.Counter({"bad signature": 1}), records_taken=50,
        records_elsewhere=40, records_replayed=12, replay_failures=0, pending=3,
        ack_pending=1, lag_checked_unix_s=1.0)))
    return registry


def test_promtool_finds_nothing_to_say_about_any_metric():
    text = generate_latest(full_registry()).decode()
    assert "cems_kpi_rtp_jitter_seconds{" in text and "cems_experience_score{" in text
    assert "cems_cluster_instances 2.0" in text and "cems_cluster_switches 2.0" in text
    assert 'cems_stream_rejected_messages_total{reason="bad signature"} 1.0' in text
    assert "cems_stream_pending_messages 3.0" in text
    assert "cems_stream_records_replayed_total 12.0" in text
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                          capture_output=True, timeout=30, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert not any(name.endswith(("_per_second", "_bits", "_bps"))
                   for name in (line.split()[2] for line in text.splitlines()
                                if line.startswith("# TYPE")))
