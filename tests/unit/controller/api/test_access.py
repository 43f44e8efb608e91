"""Every method needs a principal its rule allows, and reads are scoped to the caller.

The matrix is built from the services' descriptors: a method added to a .proto without an
access rule fails test_every_method_has_a_rule, and every method is called by every kind
of principal against a real server.
"""

import math
import threading
import time

import grpc
import pytest
from cems.v1 import customer_pb2, policy_pb2, probe_pb2, qoe_pb2, status_pb2
from cems.v1 import probe_pb2_grpc, status_pb2_grpc

from controller.api.auth import METHOD_ACTIONS
from controller.csm.model import ClassBounds, Customer, Role, ServiceClass, Sla
from controller.csm.rules import ACTIONS, initial_sls
from controller.events import FlowView, HostLearned
from controller.monitor.kpis import KpiStore
from controller.monitor.mirror_rules import MirrorRules
from controller.network.forwarding import compute_desired_flows
from controller.state import PublishedState

from tests.unit.controller.fakes import build_topology, mac
from tests.unit.controller.served import Served

SERVICES = [d for module in (status_pb2, probe_pb2, customer_pb2, qoe_pb2, policy_pb2)
            for d in module.DESCRIPTOR.services_by_name.values()]
MODULES = {"status.proto": status_pb2, "probe.proto": probe_pb2,
           "customer.proto": customer_pb2, "qoe.proto": qoe_pb2, "policy.proto": policy_pb2}
PRINCIPALS = {"anonymous": None, "manager": (Role.DOMAIN_MANAGER, ""),
              "alice": (Role.CUSTOMER, "alice"), "peer": (Role.PEER_DOMAIN, "isp-b"),
              "probe": (Role.PROBE, "cpe-1")}


def test_every_method_has_a_rule():
    methods = {f"/{s.full_name}/{m.name}" for s in SERVICES for m in s.methods}
    assert methods == set(METHOD_ACTIONS), "a method without an access rule, or a stale rule"
    assert set(METHOD_ACTIONS.values()) <= set(ACTIONS)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    topology = build_topology({1: 3, 2: 3}, [(1, 3, 2, 3)])
    for n, dpid in ((1, 1), (2, 1), (3, 2)):
        topology.learn_host(mac(n), dpid, n if dpid == 1 else 1, f"10.0.0.{n}")
    state = PublishedState(1.0, "os_ken")
    state.topology = topology.snapshot()
    state.connected = frozenset({1, 2})
    for dpid, flows in compute_desired_flows(topology, [1, 2]).items():
        state.set_flows(dpid, tuple(FlowView(dpid, e, 1, 100, 1.0) for e in sorted(flows)))
    from controller.csm.store import CsmStore
    from controller.store import Store
    store = Store(str(tmp_path_factory.mktemp("access") / "cems.sqlite"))
    csm = CsmStore(store)
    for customer_id, host, segment in (("alice", mac(1), "residential"),
                                       ("isp-b", mac(2), "peer-domain")):
        sla = Sla(customer_id, "gsb-business", {ServiceClass.SILVER: ClassBounds(1, 2)})
        csm.create_customer(Customer(customer_id, customer_id, segment, False, 1, 1, (host,)),
                            sla, initial_sls(sla, 0.0), lambda committed: None)
    kpis = KpiStore()
    from controller.config import parse_config
    from controller.runtime import build_experience
    from controller.policy.compile import PolicyFlows
    from controller.policy_loop import PolicyLoop
    experience = build_experience(parse_config({}), kpis)
    policy = PolicyLoop(experience, kpis, state, parse_config({}), kpis.directory, csm.sla,
                        PolicyFlows())
    served = Served(state, csm=csm, kpis=kpis, mirror=MirrorRules(store, (), probe=(2, 3)),
                    experience=experience, policy=policy)
    tokens = {name: served.token(*spec) for name, spec in PRINCIPALS.items() if spec}
    yield served, tokens, state, kpis
    served.close()
    store.close()


def call(channel, service, method, timeout=1.0):
    """Call a method with an empty request; returns the status code it ended with (OK for a
    unary answer, or a stream that was admitted and then cut by the deadline)."""
    module = MODULES[service.file.name.rpartition("/")[2]]
    request = getattr(module, method.input_type.name)()
    response = getattr(module, method.output_type.name)
    path = f"/{service.full_name}/{method.name}"
    kind = (channel.stream_unary if method.client_streaming and not method.server_streaming
            else channel.unary_stream if method.server_streaming
            else channel.unary_unary)
    rpc = kind(path, request_serializer=lambda m: m.SerializeToString(),
               response_deserializer=response.FromString)
    try:
        if method.client_streaming:
            rpc(iter([request]), timeout=timeout)
        elif method.server_streaming:
            for _ in rpc(request, timeout=timeout):
                pass
        else:
            rpc(request, timeout=timeout)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


CASES = [(s, m, who) for s in SERVICES for m in s.methods for who in PRINCIPALS]


@pytest.mark.parametrize("service, method, who", CASES,
                         ids=[f"{m.name}-{who}" for _, m, who in CASES])
def test_each_principal_gets_what_its_role_allows(world, service, method, who):
    served, tokens, _, _ = world
    if method.name in ("DeleteCustomer", "RevokeToken") and who == "manager":
        pytest.skip("changes the shared world; covered by the CSM and token tests")
    channel = served.connect(tokens[who]) if who != "anonymous" else \
        grpc.insecure_channel(served.address)
    with channel:
        code = call(channel, service, method)
    allowed = ACTIONS[METHOD_ACTIONS[f"/{service.full_name}/{method.name}"]]
    if who == "anonymous":
        assert code == grpc.StatusCode.UNAUTHENTICATED
    elif PRINCIPALS[who][0] not in allowed:
        assert code == grpc.StatusCode.PERMISSION_DENIED
    else:  # admitted: whatever the empty request earns, never a refusal of the caller
        assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED)
        assert code != grpc.StatusCode.PERMISSION_DENIED or who in ("alice", "peer")


def test_a_customer_sees_only_its_own_hosts_flows_records_and_events(world):
    served, tokens, state, kpis = world
    from controller.api.convert import record_from_pb
    kpis.add_records([record_from_pb("core", _record("10.0.0.1", "10.0.0.3")),
                      record_from_pb("core", _record("10.0.0.2", "10.0.0.3"))])
    with served.connect(tokens["alice"]) as channel:
        stub = status_pb2_grpc.StatusServiceStub(channel)
        topology = stub.GetTopology(status_pb2.GetTopologyRequest())
        assert [h.mac for h in topology.hosts] == [mac(1)]
        assert not topology.switches and not topology.links  # the operator's
        flows = stub.ListFlows(status_pb2.ListFlowsRequest()).flows
        assert flows and all(mac(1) in f.match for f in flows)
        probes = probe_pb2_grpc.ProbeServiceStub(channel)
        records = probes.ListKpis(probe_pb2.ListKpisRequest()).records
        assert [r.customer_id for r in records] == ["alice"]
        with pytest.raises(grpc.RpcError) as err:
            probes.ListKpis(probe_pb2.ListKpisRequest(customer_id="isp-b"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        stream = stub.WatchEvents(status_pb2.WatchEventsRequest(kinds=[
            status_pb2.EVENT_KIND_HOST]))
        got = []

        def read():
            try:
                got.extend(e.host.host.mac for e in stream)
            except grpc.RpcError:
                pass  # cancelled below
        reader = threading.Thread(target=read)
        reader.start()
        hosts = {h.mac: h for h in state.topology.hosts}
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            state.bus.publish(HostLearned(1.0, hosts[mac(2)]))  # not hers: never shown
            state.bus.publish(HostLearned(1.0, hosts[mac(1)]))
            time.sleep(0.05)
        stream.cancel()
        reader.join(5)
        assert got and set(got) == {mac(1)}
    with served.connect(tokens["manager"]) as channel:
        topology = status_pb2_grpc.StatusServiceStub(channel).GetTopology(
            status_pb2.GetTopologyRequest())
        assert len(topology.hosts) == 3 and len(topology.switches) == 2


def _record(src, dst):
    return probe_pb2.FlowRecord(src=src, dst=dst, proto=17, sport=4000, dport=5004, kind="rtp",
                                interval_start_unix_s=1.0, interval_end_unix_s=2.0, packets=50,
                                bytes=10_000, throughput_bps=80_000.0, dscp=46)


def test_records_and_tasks_are_under_the_probe_id_of_the_credential(world):
    from controller.api.convert import record_from_pb
    served, tokens, _, kpis = world
    with served.connect(tokens["probe"]) as channel:
        stub = probe_pb2_grpc.ProbeServiceStub(channel)
        reply = stub.ExportRecords(iter([probe_pb2.ExportRecordsRequest(
            records=[_record("10.0.0.9", "10.0.0.8")])]))
        assert reply.accepted == 1
        assert any(r.probe_id == "cpe-1" and r.src == "10.0.0.9" for r in kpis.latest())
        for forged in (probe_pb2.ExportRecordsRequest(probe_id="core-probe"),
                       probe_pb2.ExportRecordsRequest(records=[probe_pb2.FlowRecord(
                           probe_id="core-probe")])):
            with pytest.raises(grpc.RpcError) as err:
                stub.ExportRecords(iter([forged]))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "'cpe-1'" in err.value.details() and "'core-probe'" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            next(stub.WatchTasks(probe_pb2.WatchTasksRequest(probe_id="core-probe")))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert record_from_pb("x", probe_pb2.FlowRecord()).probe_id == "x"
    with grpc.insecure_channel(served.address) as channel:  # no credential at all
        stub = probe_pb2_grpc.ProbeServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            next(stub.WatchTasks(probe_pb2.WatchTasksRequest(probe_id="cpe-1")))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:
            stub.ExportRecords(iter([probe_pb2.ExportRecordsRequest(
                records=[_record("10.0.0.9", "10.0.0.8")])]))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert served.server.auth.refusals[("UNAUTHENTICATED",
                                        "/cems.v1.ProbeService/ExportRecords")] >= 1


def test_tokens_are_listed_without_their_secret_expire_and_are_revoked(world):
    from cems.v1 import customer_pb2_grpc
    served, tokens, _, _ = world
    csm = served.csm
    short_id, short = csm.create_token(Role.PROBE, probe_id="brief",
                                       expires_unix_s=time.time() + 0.5)
    assert csm.principal_for(short).probe_id == "brief"
    assert csm.principal_for(short, now_unix_s=time.time() + 1) is None  # expired
    with served.connect(tokens["manager"]) as channel:
        stub = customer_pb2_grpc.SlaServiceStub(channel)
        listed = stub.ListTokens(customer_pb2.ListTokensRequest()).tokens
        brief = next(t for t in listed if t.token_id == short_id)
        assert brief.probe_id == "brief" and brief.expires_unix_s > 0
        assert all(short not in str(t) for t in listed)  # never the token itself
        doomed_id, doomed = csm.create_token(Role.CUSTOMER, "alice")
        stub.RevokeToken(customer_pb2.RevokeTokenRequest(token_id=doomed_id))
        with pytest.raises(grpc.RpcError) as err:
            stub.RevokeToken(customer_pb2.RevokeTokenRequest(token_id=doomed_id))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with served.connect(doomed) as channel:
        with pytest.raises(grpc.RpcError) as err:
            status_pb2_grpc.StatusServiceStub(channel).GetStatus(status_pb2.GetStatusRequest())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert math.isfinite(brief.created_unix_s)


def test_a_host_learned_by_mistake_is_forgotten_by_the_app_on_request():
    from cems.v1 import status_pb2
    from cems.v1 import status_pb2_grpc
    forgotten = []
    state = PublishedState(1.0, "os_ken")
    topology = build_topology({1: 3}, [])
    topology.learn_host(mac(1), 1, 1, "10.0.0.1")
    state.topology = topology.snapshot()
    served = Served(state, forget_host=forgotten.append)
    try:
        stub = status_pb2_grpc.NetworkServiceStub(served.channel)
        stub.ForgetHost(status_pb2.ForgetHostRequest(mac=mac(1).upper()))
        assert forgotten == [mac(1)]
        for bad, code in (("00:00:00:00:00:09", grpc.StatusCode.NOT_FOUND),
                          ("nonsense", grpc.StatusCode.INVALID_ARGUMENT)):
            with pytest.raises(grpc.RpcError) as err:
                stub.ForgetHost(status_pb2.ForgetHostRequest(mac=bad))
            assert err.value.code() == code
        assert forgotten == [mac(1)]
    finally:
        served.close()
