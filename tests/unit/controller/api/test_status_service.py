"""StatusService over real gRPC (port 0) on a PublishedState filled by the real cores."""

import threading

import grpc
import pytest
from cems.v1 import status_pb2 as pb
from cems.v1 import status_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from controller.events import HostLearned

from tests.unit.controller.fakes import mac
from tests.unit.controller.served import Served


@pytest.fixture
def channel(state):
    served = Served(state)
    yield served.channel
    served.close()


def test_status_shows_the_cluster_to_the_domain_manager(state, capsys):
    import types  # pylint: disable=import-outside-toplevel
    from controller import cli  # pylint: disable=import-outside-toplevel
    state.leader = False
    state.cluster = types.SimpleNamespace(instance="h:2", holder="h:1",
                                          members=(("h:1", "10.0.0.1:50051"),
                                                   ("h:2", "10.0.0.2:50051")),
                                          holders={2: ("h:1", 5), 1: ("h:1", 4),
                                                   3: ("h:2", 6)},
                                          partitions=16,
                                          partition_holders={p: "h:1" if p < 8 or p == 12
                                                             else "h:2" for p in range(16)},
                                          lease_age_s=lambda: 0.5)
    served = Served(state)
    try:
        assert cli.main(["--server", served.address, "--token", served.manager,
                         "status"]) == 0
    finally:
        served.close()
    out = capsys.readouterr().out
    assert "follower: another instance is the cluster's leader" in out
    assert "h:2 (lease renewed 0.5 s ago)" in out
    assert "h:1 at 10.0.0.1:50051 (leader): master of 2 switches (0000000000000001, " \
        "0000000000000002); quality of 9 of 16 customer partitions (0-7, 12)" in out
    assert "h:2 at 10.0.0.2:50051: master of 1 switches (0000000000000003); quality of 7 " \
        "of 16 customer partitions (8-11, 13-15)" in out


def test_status_says_who_the_caller_is(state):
    # pylint: disable=import-outside-toplevel
    from controller.csm.model import ClassBounds, Customer, Role, ServiceClass, Sla
    from controller.csm.rules import initial_sls
    state.store = "postgresql postgresql://cems:***@db/cems"
    served = Served(state)
    sla = Sla("alice", "gsb-business", {ServiceClass.SILVER: ClassBounds(1, 10 ** 7)})
    served.csm.create_customer(Customer("alice", "alice"), sla, initial_sls(sla, 0.0),
                               lambda committed: None)
    try:
        status = pb_grpc.StatusServiceStub(served.channel).GetStatus(pb.GetStatusRequest())
        assert status.caller_role == "domain-manager" and status.store.startswith("postgresql")
        for role, subject in ((Role.CUSTOMER, "alice"), (Role.PROBE, "edge-1")):
            with served.connect(served.token(role, subject)) as channel:
                status = pb_grpc.StatusServiceStub(channel).GetStatus(pb.GetStatusRequest())
            assert (status.caller_role, status.caller_id) == (role.value, subject)
            assert status.store == ""   # where the store is: the domain manager's business
    finally:
        served.close()


def test_status_topology_flows_ports(channel):
    stub = pb_grpc.StatusServiceStub(channel)
    status = stub.GetStatus(pb.GetStatusRequest())
    assert (status.switches_connected, status.links, status.hosts) == (2, 2, 2)
    # per switch: 4 control, one flow per direction of the pair, the ARP its host may send
    # about itself and the ARP from the link (controller.network.forwarding._arp_flows)
    assert status.flows == 16
    topo = stub.GetTopology(pb.GetTopologyRequest())
    assert [s.dpid for s in topo.switches] == [1, 2]
    assert {(l.src_dpid, l.src_port, l.dst_dpid, l.dst_port) for l in topo.links} == \
        {(1, 2, 2, 2), (2, 2, 1, 2)}
    edge = {(p.dpid, p.port_no): p.edge for s in topo.switches for p in s.ports}
    assert edge[(1, 1)] and not edge[(1, 2)]
    assert [(h.mac, list(h.ipv4)) for h in topo.hosts] == [(mac(1), ["10.0.0.1"]),
                                                           (mac(2), ["10.0.0.2"])]
    flows = stub.ListFlows(pb.ListFlowsRequest(dpid=1, component="forwarding")).flows
    assert len(flows) == 4 and all(f.bytes_per_second == 125.0 and f.rate_known for f in flows)
    assert sum("arp_spa=" in f.match or "eth_type=2054" in f.match for f in flows) == 2
    assert stub.ListFlows(pb.ListFlowsRequest(limit=3)).flows[2].dpid == 1
    ports = stub.ListPorts(pb.ListPortsRequest(dpid=2)).ports
    assert [(p.dpid, p.port_no, p.rx_bytes_per_second) for p in ports] == [(2, 1, 2.0)]


@pytest.mark.parametrize("call, request_msg, code, words", [
    ("ListFlows", pb.ListFlowsRequest(dpid=99), grpc.StatusCode.NOT_FOUND, "no switch with dpid 99"),
    ("ListPorts", pb.ListPortsRequest(dpid=99), grpc.StatusCode.NOT_FOUND, "known dpids: 1, 2"),
    ("ListFlows", pb.ListFlowsRequest(component="bogus"), grpc.StatusCode.INVALID_ARGUMENT,
     "allowed: control"),
    ("ListFlows", pb.ListFlowsRequest(limit=2_000_000), grpc.StatusCode.INVALID_ARGUMENT,
     "maximum"),
])
def test_bad_requests_get_clear_status(channel, call, request_msg, code, words):
    stub = pb_grpc.StatusServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, call)(request_msg)
    assert err.value.code() == code
    assert words in err.value.details()


def test_malformed_and_unknown_requests(channel):
    raw = channel.unary_unary("/cems.v1.StatusService/ListFlows")
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\x0a\xff\x01")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cems.v1.ListFlowsRequest" in err.value.details()
    unknown = channel.unary_unary("/cems.v1.StatusService/DropAllFlows")
    with pytest.raises(grpc.RpcError) as err:
        unknown(b"")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_watch_filters_kinds_and_rejects_bad_ones(channel, state):
    stub = pb_grpc.StatusServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        next(iter(stub.WatchEvents(pb.WatchEventsRequest(kinds=[0]))))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stream = stub.WatchEvents(pb.WatchEventsRequest(kinds=[pb.EVENT_KIND_HOST]))
    received = []
    reader = threading.Thread(target=lambda: received.append(next(iter(stream))))
    reader.start()
    host = state.topology.hosts[0]
    for _ in range(100):  # publish until the subscription exists and the event is read
        state.bus.publish(HostLearned(1.0, host))
        reader.join(0.05)
        if received:
            break
    stream.cancel()
    assert received[0].host.host.mac == host.mac
    assert received[0].kind == pb.EVENT_KIND_HOST


def test_health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(service="cems.v1.StatusService")).status \
        == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")])))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"cems.v1.StatusService", "grpc.health.v1.Health"} <= names


def test_a_generic_client_calls_the_api_from_reflection_alone(channel):
    """What grpcurl does: learn the service from reflection, build the request dynamically."""
    from google.protobuf import descriptor_pool, json_format, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import \
        ProtoReflectionDescriptorDatabase

    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    service = pool.FindServiceByName("cems.v1.StatusService")
    method = service.methods_by_name["ListPorts"]
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary(f"/{service.full_name}/{method.name}",
                               request_serializer=request_cls.SerializeToString,
                               response_deserializer=response_cls.FromString)
    reply = json_format.MessageToDict(call(json_format.ParseDict({"dpid": "1"}, request_cls())))
    assert reply["ports"][0]["dpid"] == "1" and reply["ports"][0]["rxBytesPerSecond"] == 2.0


def test_meters_show_their_configured_rate(state):
    from controller.events import MeterStatsView
    from controller.openflow.pipeline import MeterSpec
    state.set_meters(1, (MeterStatsView(1, 0x10001, 2, (1, 2, 3, 4), (0.0,) * 4),
                         MeterStatsView(1, 7, 0, (0, 0, 0, 0), (0.0,) * 4)))
    state.set_meter_configs(1, {0x10001: MeterSpec(0x10001, 8000, 800)})
    served = Served(state)
    try:
        meters = pb_grpc.StatusServiceStub(served.channel).ListMeters(
            pb.ListMetersRequest(dpid=1)).meters
        assert [(m.meter_id, m.rate_kbps, m.burst_kbits) for m in meters] == [
            (7, 0, 0), (0x10001, 8000, 800)]
    finally:
        served.close()
