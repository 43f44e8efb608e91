"""QoeService over real gRPC: records in, quality and statuses out, sessions, zoom, findings,
and a customer sees only its own."""

import threading
import time

import grpc
import pytest
from cems.v1 import probe_pb2, probe_pb2_grpc, qoe_pb2, qoe_pb2_grpc

from controller.api.probe import take_records
from controller.config import parse_config
from controller.csm.model import ClassBounds, Customer, Role, ServiceClass, Sla
from controller.csm.rules import initial_sls
from controller.csm.store import CsmStore
from controller.experience_loop import ExperienceLoop
from controller.monitor.kpis import KpiStore, ProbeHealth
from controller.monitor.mirror_rules import MirrorRules
from controller.runtime import build_experience
from controller.state import PublishedState
from controller.store import Store

from tests.unit.controller.fakes import build_topology, mac
from tests.unit.controller.served import Served


@pytest.fixture
def world():
    topology = build_topology({1: 4, 2: 4}, [(1, 4, 2, 4)])
    topology.learn_host(mac(1), 2, 1, "10.0.0.1")   # alice's phone, behind switch 2
    topology.learn_host(mac(2), 2, 2, "10.0.0.2")   # bob's, also behind it
    topology.learn_host(mac(9), 1, 1, "10.0.0.9")   # the voice server, at the core
    state = PublishedState(1.0, "os_ken")
    state.topology = topology.snapshot()
    store = Store(":memory:")
    csm = CsmStore(store)
    for customer_id, host, port in (("alice", mac(1), 1), ("bob", mac(2), 2)):
        sla = Sla(customer_id, "gsb-business", {ServiceClass.SILVER: ClassBounds(1, 10 ** 7)})
        csm.create_customer(Customer(customer_id, customer_id, "soho", False, 2, port, (host,)),
                            sla, initial_sls(sla, 0.0), lambda committed: None)
    kpis = KpiStore()
    experience = build_experience(parse_config({}), kpis)
    mirror = MirrorRules(store, (), probe=(1, 3))
    served = Served(state, csm=csm, kpis=kpis, mirror=mirror, experience=experience)
    served.kpis = kpis
    loop = ExperienceLoop(experience, state, parse_config({}), mirror)
    yield served, loop, mirror, state
    served.close()
    store.close()


def voice(src, loss, second, probe_seq=[0]):
    return probe_pb2.FlowRecord(src="10.0.0.9", dst=src, proto=17, sport=40000, dport=5004,
                                kind="rtp", interval_start_unix_s=second,
                                interval_end_unix_s=second + 1, packets=50, bytes=10_000,
                                throughput_bps=80_000, dscp=34, kpis={
                                    "rtp_loss_ratio": loss, "rtp_jitter_max_ms": 2.0,
                                    "rtp_payload_type": 0.0, "rtp_mean_burst_packets": 1.0,
                                    "rtp_expected": 50.0, "rtp_lost": 50 * loss})


def test_voice_records_become_quality_statuses_zooms_and_a_finding(world):
    served, loop, mirror, state = world
    probe = served.connect(served.token(Role.PROBE, "core"))
    export = probe_pb2_grpc.ProbeServiceStub(probe).ExportRecords
    start = time.time()
    clock = [start]  # samples are stamped on arrival: one export a second, as a probe sends
    loop.experience.clock = loop.experience.assessor.clock = lambda: clock[0]
    for second in range(12):  # alice loses 10 % of her voice, bob loses nothing
        clock[0] = start + second
        export(iter([probe_pb2.ExportRecordsRequest(records=[
            voice("10.0.0.1", 0.10, start + second), voice("10.0.0.2", 0.0, start + second)])]))
    events = []
    stub = qoe_pb2_grpc.QoeServiceStub(served.channel)
    watch = stub.WatchExperience(qoe_pb2.WatchExperienceRequest())
    def read():
        try:
            events.extend(watch)
        except grpc.RpcError:
            pass  # cancelled below
    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)
    loop.tick()
    alice = stub.GetExperience(qoe_pb2.GetExperienceRequest(customer_id="alice"))
    (service,) = alice.services
    assert service.service == "voice" and service.status == "degraded"
    assert service.latest.bound == "upper" and "one_way_delay_ms" in service.latest.missing
    assert "G.107" in service.latest.model and service.target == pytest.approx(4.03)
    assert alice.zoom and "voice degraded" in alice.zoom[0]
    assert not service.history   # asked for none
    (service,) = stub.GetExperience(qoe_pb2.GetExperienceRequest(customer_id="alice",
                                                                 history_s=3600)).services
    assert sum(p.samples for p in service.history) == 12 and service.history[-1].worst < 4.03
    assert ("alice", "") in {r.key for r in mirror.rules()}  # zoomed in: all her traffic
    listed = stub.ListExperience(qoe_pb2.ListExperienceRequest()).experience
    assert [(e.customer_id, e.status) for e in listed] == [("alice", "degraded"), ("bob", "ok")]
    findings = stub.ListFindings(qoe_pb2.ListFindingsRequest()).findings
    assert findings and findings[0].affected_customers == ["alice"]
    deadline = time.time() + 5
    while time.time() < deadline and len(events) < 3:
        time.sleep(0.05)
    watch.cancel()
    reader.join(5)
    kinds = {e.WhichOneof("what") for e in events}
    assert {"status", "zoom", "finding"} <= kinds
    # alice sees her own experience only
    with served.connect(served.token(Role.CUSTOMER, "alice")) as channel:
        own = qoe_pb2_grpc.QoeServiceStub(channel)
        assert own.GetExperience(qoe_pb2.GetExperienceRequest()).customer_id == "alice"
        with pytest.raises(grpc.RpcError) as err:
            own.GetExperience(qoe_pb2.GetExperienceRequest(customer_id="bob"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert [e.customer_id for e in own.ListExperience(
            qoe_pb2.ListExperienceRequest()).experience] == ["alice"]
        with pytest.raises(grpc.RpcError) as err:
            own.ListFindings(qoe_pb2.ListFindingsRequest())
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    probe.close()


def test_replayed_records_count_from_when_they_came_and_not_their_old_health(world):
    """A partition just taken (controller.stream replays its last seconds): the samples are
    placed when each batch was stored, so the first tick already judges the last 10 s; the
    batches' probe health and dropped counts, taken when they came, are not taken again."""
    served, loop, _mirror, state = world
    experience, kpis = loop.experience, served.kpis
    now = time.time()
    kpis.set_health(ProbeHealth("core", now, frames=1000))
    for second in range(29, -1, -1):   # the last thirty seconds, oldest first
        request = probe_pb2.ExportRecordsRequest(
            records=[voice("10.0.0.1", 0.10, now - second)], dropped_records=7,
            health=probe_pb2.ProbeHealth(probe_id="core", time_unix_s=now - second, frames=1))
        taken, problems = take_records(kpis, state.bus, experience.assessor.records, "core",
                                       request, list(request.records), now - second)
        assert (taken, problems) == (1, [])
    assert kpis.probe_dropped_total == 0
    assert [h.frames for h in kpis.probes()] == [1000]   # the health of now stays
    loop.tick()
    (service,) = qoe_pb2_grpc.QoeServiceStub(served.channel).GetExperience(
        qoe_pb2.GetExperienceRequest(customer_id="alice")).services
    assert service.status == "degraded"
    counts = {w.window_s: w.count for w in service.windows}
    assert (counts[10], counts[60]) == (10, 30)   # each in its second, not all at once now


def test_sessions_reported_by_a_test_client_and_a_zoom_asked_for(world):
    served, loop, mirror, _ = world
    with served.connect(served.token(Role.PROBE, "web-client")) as channel:
        stub = qoe_pb2_grpc.QoeServiceStub(channel)
        reply = stub.ReportSession(qoe_pb2.SessionReport(client_address="10.0.0.2",
                                                         service="web", page_load_s=2.0))
        assert reply.customer_id == "bob" and reply.quality.score == pytest.approx(3.0046,
                                                                                    abs=1e-3)
        video = stub.ReportSession(qoe_pb2.SessionReport(
            client_address="10.0.0.2", service="video", stalls=0, initial_delay_s=0.5))
        assert video.quality.score == 5.0
        for bad in (qoe_pb2.SessionReport(client_address="10.0.0.77", service="web",
                                          page_load_s=1.0),
                    qoe_pb2.SessionReport(client_address="10.0.0.2", service="web"),
                    qoe_pb2.SessionReport(client_address="10.0.0.2", service="telnet")):
            with pytest.raises(grpc.RpcError) as err:
                stub.ReportSession(bad)
            assert err.value.code() in (grpc.StatusCode.NOT_FOUND,
                                        grpc.StatusCode.INVALID_ARGUMENT)
    services = qoe_pb2_grpc.QoeServiceStub(served.channel).GetExperience(
        qoe_pb2.GetExperienceRequest(customer_id="bob")).services
    assert {s.service for s in services} == {"web", "video"}
    with served.connect(served.token(Role.CUSTOMER, "bob")) as channel:
        zoom = qoe_pb2_grpc.QoeServiceStub(channel).RequestZoom(qoe_pb2.ZoomRequest(
            seconds=60)).zoom
    assert zoom.customer_id == "bob" and zoom.active and "customer:bob" in zoom.reason
    assert "bob" in zoom.mirror and ("bob", "") in {r.key for r in mirror.rules()}
