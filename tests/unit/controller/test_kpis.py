"""Probe records: validation, the exporter with its bounded buffer, ListKpis joins."""

import math

import grpc
import pytest
from cems.v1 import probe_pb2 as pb
from cems.v1 import probe_pb2_grpc as pb_grpc

from client.channel import Credentials
from controller import cli
from controller.api.server import serve_grpc
from controller.config import Address
from controller.csm.model import ClassBounds, Customer, Role, ServiceClass, Sla
from controller.csm.rules import initial_sls
from controller.csm.store import CsmStore
from lab.emulation import free_port, wait_for
from controller.monitor.kpis import KpiRecord, KpiStore, check_record
from controller.state import PublishedState
from controller.store import Store
from probes.export import RecordExporter
from probes.flows import FlowRecord

from tests.unit.controller.fakes import build_topology, mac
from tests.unit.controller.served import Served


def kpi(**kw) -> KpiRecord:
    base = dict(probe_id="p", src="10.0.0.1", dst="10.0.0.2", proto=17, sport=4000, dport=5004,
                kind="rtp", interval_start_unix_s=1.0, interval_end_unix_s=2.0, packets=50, bytes=10_000,
                throughput_bps=80_000.0, dscp=46, kpis={"rtp_loss_ratio": 0.01})
    base.update(kw)
    return KpiRecord(**base)


@pytest.mark.parametrize("changes, words", [
    ({"kpis": {"rtp_loss_ratio": 3.0}}, "a ratio"),
    ({"interval_end_unix_s": 0.5}, "ends"),
    ({"throughput_bps": -1.0}, "throughput_bps"),
    ({"bytes": 10}, "cannot hold"),
    ({"kind": "carrier-pigeon"}, "kind"),
    ({"kpis": {"tcp_rtt_ms": math.inf}}, "tcp_rtt_ms"),
])
def test_impossible_records_are_rejected_with_the_reason(changes, words):
    assert words in check_record(kpi(**changes))
    assert check_record(kpi(kpis={"rtp_loss_ratio": math.nan})) == ""  # unknown is fine


def test_store_keeps_a_bounded_window_and_loses_nothing_on_bad_input():
    store = KpiStore(window=3, max_flows=2)
    assert store.add([kpi(interval_start_unix_s=float(i), interval_end_unix_s=i + 1.0)
                      for i in range(5)]) == (5, [])
    accepted, problems = store.add([kpi(kpis={"rtp_loss_ratio": 2.0})])
    assert accepted == 0 and len(problems) == 1
    assert [r.interval_start_unix_s for r in store.history("p", kpi().flow_key)] == [2.0, 3.0, 4.0]
    store.add([kpi(sport=1), kpi(sport=2)])
    assert len(store.latest()) == 2  # the oldest flow made room
    # the same flow seen by another probe is another window, not an overwrite
    fresh = KpiStore()
    fresh.add([kpi(), kpi(probe_id="agent", kind="udp", kpis={})])
    assert sorted(r.probe_id for r in fresh.latest()) == ["agent", "p"]


def flow_record(sport: int, loss: float) -> FlowRecord:
    return FlowRecord("10.0.0.1", "10.0.0.2", 17, sport, 5004, "rtp", 1.0, 2.0, 50, 10_000,
                      80_000.0, 46, {"rtp_loss_ratio": loss, "rtp_jitter_ms": math.nan})


def test_exporter_buffers_while_the_controller_is_away_and_delivers_later(tmp_path, capsys):
    port = free_port()
    csm = CsmStore(Store(str(tmp_path / "s.sqlite")))
    probe = Credentials(csm.create_token(Role.PROBE, probe_id="probe-1")[1])
    exporter = RecordExporter(f"127.0.0.1:{port}", "probe-1", max_buffer=3, interval_s=0.05,
                              max_backoff_s=0.1, credentials=probe).start()
    exporter.offer([flow_record(i, 0.01) for i in range(5)])  # 2 too many for the buffer
    assert exporter.dropped == 2
    assert exporter.pending() == 3  # buffered or in flight, never lost while unreachable

    topology = build_topology({1: 3}, [])
    topology.learn_host(mac(1), 1, 1, "10.0.0.1")
    state = PublishedState(1.0, "os_ken")
    state.topology = topology.snapshot()
    sla = Sla("alice", "gsb-business", {ServiceClass.SILVER: ClassBounds(1, 2)})
    csm.create_customer(Customer("alice", "Alice", access_dpid=1, access_port=1,
                                 hosts=(mac(1),)), sla, initial_sls(sla, 0), lambda c: None)
    kpis = KpiStore()
    served = Served(state, port, csm=csm, kpis=kpis)
    bound = served.port
    try:
        wait_for(lambda: exporter.pending() == 0, 10, "the buffered records to be delivered")
        exporter.offer([flow_record(9, 1.5)])  # impossible: rejected, reported
        exporter.close()
        assert exporter.sent == 3 and exporter.rejected == 1 and "a ratio" in exporter.problems[0]
        reply = pb_grpc.ProbeServiceStub(served.channel).ListKpis(pb.ListKpisRequest(
            customer_id="alice"))
        assert {r.sport for r in reply.records} == {2, 3, 4}
        assert all(r.service == "voice" and r.customer_id == "alice" for r in reply.records)
        assert "rtp_jitter_ms" not in reply.records[0].kpis  # unknown stays absent, not 0
        assert (reply.accepted_total, reply.rejected_total, reply.probe_dropped_total) == (3, 1, 2)
        assert cli.main(["--server", f"127.0.0.1:{bound}", "--token", served.manager,
                         "kpis"]) == 0
        out = capsys.readouterr().out
        assert "alice" in out and "rtp_loss_ratio=0.01" in out and "dropped by probes 2" in out
    finally:
        served.close()
        csm.store.close()


def test_a_malformed_export_stream_is_invalid_argument_and_stores_nothing():
    kpis = KpiStore()
    served = Served(PublishedState(1.0, "os_ken"), kpis=kpis)
    try:
        with served.connect(served.token(Role.PROBE, "p1")) as channel:
            raw = channel.stream_unary("/cems.v1.ProbeService/ExportRecords")
            with pytest.raises(grpc.RpcError) as err:
                raw(iter([b"\x12\xff\x01"]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "cems.v1.ExportRecordsRequest" in err.value.details()
        assert kpis.accepted_total == 0
    finally:
        served.close()


def test_probe_health_travels_alone_and_shows_in_list_watch_metrics_and_cemsctl(capsys):
    from prometheus_client import CollectorRegistry, generate_latest
    from cems.v1 import status_pb2, status_pb2_grpc
    from controller.metrics import KpiCollector

    kpis = KpiStore()
    registry = CollectorRegistry()
    registry.register(KpiCollector(kpis))
    state = PublishedState(1.0, "os_ken")
    served = Served(state, kpis=kpis)
    port = served.port
    exporter = RecordExporter(f"127.0.0.1:{port}", "", interval_s=0.05, credentials=Credentials(
        served.token(Role.PROBE, "probe-7"))).start()
    try:
        with served.connect(served.manager) as channel:
            events = status_pb2_grpc.StatusServiceStub(channel).WatchEvents(
                status_pb2.WatchEventsRequest(kinds=[status_pb2.EVENT_KIND_KPI]))
            wait_for(lambda: len(state.bus) == 1, 5, "the watcher to subscribe")
            exporter.set_health(pb.ProbeHealth(source="ring:eth9", frames=1000, malformed=3,
                                               kernel_received=990, kernel_dropped=10))
            wait_for(lambda: kpis.probes(), 5, "a health-only report to arrive")
            assert kpis.accepted_total == 0
            exporter.offer([flow_record(4000, 0.02), flow_record(4001, 0.04)])
            event = next(events)
            events.cancel()
            assert event.kind == status_pb2.EVENT_KIND_KPI
            assert sorted(r.sport for r in event.kpi.records) == [4000, 4001]
            assert {r.service for r in event.kpi.records} == {"voice"}
            reply = pb_grpc.ProbeServiceStub(channel).ListKpis(pb.ListKpisRequest())
        (health,) = reply.probes
        assert (health.probe_id, health.source, health.kernel_dropped) == ("probe-7", "ring:eth9",
                                                                           10)
        text = generate_latest(registry).decode()
        assert 'cems_probe_kernel_dropped_total{probe="probe-7"} 10.0' in text
        assert 'cems_kpi_flows{service="voice"} 2.0' in text
        assert 'cems_kpi_rtp_loss_ratio{service="voice",stat="worst"} 0.04' in text
        assert 'cems_kpi_rtp_loss_ratio{service="voice",stat="mean"} 0.03' in text
        assert 'cems_probe_records_total{outcome="accepted"} 2.0' in text
        assert 'cems_kpi_bytes_total{service="voice"} 20000.0' in text
        assert 'cems_kpi_packets_total{service="voice"} 100.0' in text
        assert "cems_kpi_rtp_jitter_seconds{" not in text  # unknown: no sample, not a zero
        assert cli.main(["--server", f"127.0.0.1:{port}", "--token", served.manager,
                         "kpis"]) == 0
        assert "kernel dropped 10 of 1000" in capsys.readouterr().out
    finally:
        exporter.close()
        served.close()


def test_records_are_joined_as_they_arrive_and_again_when_the_directory_changes():
    from controller.csm.model import CustomerState, Sls
    from controller.csm.service import CustomerChanged
    from controller.monitor.directory import CustomerDirectory
    topology = build_topology({1: 3}, [])
    snapshots = [topology.snapshot()]
    directory = CustomerDirectory(lambda: snapshots[-1])
    directory.load([CustomerState(Customer("alice", "Alice", hosts=(mac(1),)),
                                  Sls("alice", ServiceClass.SILVER, 1, 0.0), 0x10001)])
    store = KpiStore(directory=directory)
    store.add([kpi(), kpi(src="10.0.0.9", sport=7)])
    assert {r.customer_id for r in store.latest()} == {""}  # 10.0.0.1 is not known yet
    assert {r.service for r in store.latest()} == {"voice"}  # joined once, by kind
    topology.learn_host(mac(1), 1, 1, "10.0.0.1")
    snapshots.append(topology.snapshot())
    assert [r.sport for r in store.select(customer_id="alice").records] == [4000]
    assert store.history("p", kpi().flow_key)[0].customer_id == "alice"
    alice = Customer("alice", "Alice", hosts=(mac(1),))
    directory.customer_changed(CustomerChanged("alice", None))  # deleted
    assert store.select(customer_id="alice").records == []
    directory.customer_changed(CustomerChanged("alice", CustomerState(
        alice, Sls("alice", ServiceClass.SILVER, 1, 0.0), 0x10001)))
    added, _ = store.add_records([kpi(interval_start_unix_s=2.0, interval_end_unix_s=3.0)])
    assert added[0].customer_id == "alice"
    assert [r.interval_start_unix_s for r in store.select("alice", history=True).records] == [1.0, 2.0]


def test_the_store_is_bounded_in_bytes_ages_ended_flows_and_pages_by_customer():
    from controller.csm.model import CustomerState, Sls
    from controller.monitor.directory import CustomerDirectory
    from controller.monitor.kpis import record_bytes
    clock = [1000.0]
    topology = build_topology({1: 3}, [])
    topology.learn_host(mac(1), 1, 1, "10.0.0.1")
    snapshot = topology.snapshot()
    directory = CustomerDirectory(lambda: snapshot)
    directory.load([CustomerState(Customer("alice", "A", hosts=(mac(1),)),
                                  Sls("alice", ServiceClass.SILVER, 1, 0.0), 0x10001)])
    one = record_bytes(kpi())
    store = KpiStore(directory=directory, max_bytes=10 * one, max_age_s=30.0,
                     clock=lambda: clock[0])
    store.add([kpi(sport=p, src="10.0.0.1" if p % 2 else "10.0.0.7") for p in range(12)])
    assert len(store.latest()) == 10 and store.evicted_total == 2  # the oldest two went
    assert store.bytes_total <= 10 * one
    page = store.select("alice", limit=2)
    assert [r.sport for r in page.records] == [3, 5] and page.total == 5
    assert [r.sport for r in store.select("alice", offset=4, limit=2).records] == [11]
    assert store.select("alice", offset=4, limit=2).next_offset is None
    # one flow goes on for 40 s of the probe's time; the others have ended by then
    store = KpiStore(directory=directory, max_age_s=30.0, clock=lambda: clock[0])
    store.add([kpi(sport=p) for p in range(10)])
    for second in range(40):
        store.add([kpi(sport=3, interval_start_unix_s=2.0 + second,
                       interval_end_unix_s=3.0 + second)])
    current = store.latest()
    assert [r.sport for r in current] == [3]
    ended = next(r for r in store.latest(include_ended=True) if r.sport == 5)
    assert store.age_of(ended) == pytest.approx(40.0)
    clock[0] += 31  # then the probe goes silent
    assert store.latest() == [] and len(store.latest(include_ended=True)) == 10


def test_the_service_is_decided_by_signature_then_ndpi_then_ports_and_the_record_says_how():
    from controller.api.convert import kpi_record_pb, record_from_pb
    from probes.export import record_pb
    base = dict(src="10.0.0.1", dst="10.0.0.2", interval_start_unix_s=1.0,
                interval_end_unix_s=2.0, packets=10, bytes=5_000, throughput_bps=40_000.0,
                dscp=0, kpis={})
    sent = [
        FlowRecord(proto=6, sport=40000, dport=443, kind="tcp", application="TLS.YouTube",
                   category="Media", detected_by="ndpi", **base),
        FlowRecord(proto=6, sport=40001, dport=8443, kind="tcp", application="TLS",
                   category="Web", detected_by="ndpi", **base),
        FlowRecord(proto=17, sport=4000, dport=5004, kind="rtp", application="RTP",
                   category="Media", detected_by="ndpi", **base),  # the signature wins
        FlowRecord(proto=6, sport=40002, dport=80, kind="tcp", **base),  # no nDPI: the port
        FlowRecord(proto=6, sport=40003, dport=9999, kind="tcp", application="Redis",
                   category="Database", detected_by="ndpi-guess", **base),  # not in the table
    ]
    store = KpiStore()
    accepted, problems = store.add_records([record_from_pb("p", record_pb(r, "p"))
                                            for r in sent])
    assert not problems
    answers = [kpi_record_pb(r) for r in accepted]
    assert [(a.service, a.service_method) for a in answers] == [
        ("video", "ndpi"), ("web", "ndpi"), ("voice", "signature"), ("web", "port"),
        ("unknown", "none")]
    assert (answers[0].application, answers[0].category, answers[0].detected_by) == \
        ("TLS.YouTube", "Media", "ndpi")
    assert answers[4].detected_by == "ndpi-guess"
