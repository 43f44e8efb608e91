"""SlaService and SlsService over real gRPC with the real store, interceptor and rules."""

import grpc
import pytest
from cems.v1 import customer_pb2 as pb
from cems.v1 import customer_pb2_grpc as pb_grpc

from controller import cli
from controller.api.server import serve_grpc
from controller.config import Address
from controller.openflow.pipeline import METER_BASE
from controller.csm.model import Role
from controller.events import MeterStatsView
from controller.csm.store import CsmStore
from controller.state import PublishedState
from controller.store import Store

from tests.unit.controller.fakes import build_topology

M = 1_000_000


@pytest.fixture
def env(store_where):
    # Access switch 5 (customers on ports 3..), uplinks 5:1 -> 3 -> 2 (gateway).
    topology = build_topology({2: 2, 3: 2, 5: 8}, [(5, 1, 3, 1), (3, 2, 2, 1)])
    state = PublishedState(1.0, "os_ken")
    state.topology = topology.snapshot()
    store = Store(store_where)
    csm = CsmStore(store)
    capacities = {(5, 3): 20 * M, (5, 4): 20 * M, (5, 1): 25 * M, (3, 2): 1000 * M}
    changed = []
    server, port = serve_grpc(state, Address("127.0.0.1", 0), csm=csm, gateway_dpid=2,
                              capacities=capacities, on_change=changed.append)
    _, manager_token = csm.create_token(Role.DOMAIN_MANAGER)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield {"channel": channel, "csm": csm, "manager": manager_token, "port": port,
           "where": store_where,
           "changed": changed, "store": store, "state": state}
    channel.close()
    server.stop(0)
    store.close()


def auth(token):
    return (("authorization", f"Bearer {token}"),)


def sla(customer_id, gold_max=8 * M, interval=60.0):
    return pb.Sla(customer_id=customer_id, variant="gsb-business", min_change_interval_s=interval,
                  bounds=[pb.ClassBounds(service_class=pb.SERVICE_CLASS_GOLD, min_bps=2 * M,
                                         max_bps=gold_max),
                          pb.ClassBounds(service_class=pb.SERVICE_CLASS_SILVER, min_bps=2 * M,
                                         max_bps=10 * M),
                          pb.ClassBounds(service_class=pb.SERVICE_CLASS_BRONZE, min_bps=1 * M,
                                         max_bps=20 * M)])


def create(env, customer_id, port, **kw):
    stub = pb_grpc.SlaServiceStub(env["channel"])
    return stub.CreateCustomer(pb.CreateCustomerRequest(
        customer=pb.Customer(customer_id=customer_id, name=customer_id.title(),
                             segment="business", access_dpid=5, access_port=port,
                             hosts=["00:00:00:00:00:0A"]),
        sla=sla(customer_id, **kw)), metadata=auth(env["manager"]))


def customer_token(env, customer_id):
    stub = pb_grpc.SlaServiceStub(env["channel"])
    return stub.CreateToken(pb.CreateTokenRequest(role=pb.ROLE_CUSTOMER, customer_id=customer_id),
                            metadata=auth(env["manager"])).token


def test_customer_lifecycle_and_self_service(env):
    reply = create(env, "alice", 3)
    assert reply.sls.service_class == pb.SERVICE_CLASS_SILVER and reply.sls.rate_bps == 2 * M
    assert [c.customer_id for c in env["changed"]] == ["alice"]
    assert env["changed"][0].state.sls == env["csm"].current_sls("alice")  # the event carries it
    token = customer_token(env, "alice")
    sls = pb_grpc.SlsServiceStub(env["channel"])
    assert sls.GetSla(pb.GetSlaRequest(), metadata=auth(token)).sla.variant == "gsb-business"
    changed = sls.ChangeSls(pb.ChangeSlsRequest(service_class=pb.SERVICE_CLASS_GOLD,
                                                rate_bps=8 * M), metadata=auth(token))
    assert (changed.sls.service_class, changed.sls.rate_bps) == (pb.SERVICE_CLASS_GOLD, 8 * M)
    assert changed.next_change_allowed_unix_s == pytest.approx(changed.sls.changed_unix_s + 60)
    assert sls.GetSls(pb.GetSlsRequest(), metadata=auth(token)).sls.rate_bps == 8 * M
    assert env["changed"][-1].customer_id == "alice"
    assert env["changed"][-1].state.sls.rate_bps == 8 * M
    # too soon: the message says when the next change is allowed
    with pytest.raises(grpc.RpcError) as err:
        sls.ChangeSls(pb.ChangeSlsRequest(service_class=pb.SERVICE_CLASS_BRONZE, rate_bps=5 * M),
                      metadata=auth(token))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "one change every 60 s, next at unix time" in err.value.details()
    retry = dict(err.value.trailing_metadata())["cems-retry-after-unix-s"]
    assert float(retry) == pytest.approx(changed.next_change_allowed_unix_s, abs=0.01)


def test_out_of_bounds_and_other_customers_and_no_token(env):
    create(env, "alice", 3, interval=0)
    create(env, "bob", 4, interval=0)
    alice = customer_token(env, "alice")
    sls = pb_grpc.SlsServiceStub(env["channel"])
    with pytest.raises(grpc.RpcError) as err:
        sls.ChangeSls(pb.ChangeSlsRequest(service_class=pb.SERVICE_CLASS_GOLD, rate_bps=9 * M),
                      metadata=auth(alice))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "9 Mbit/s is outside your gold bounds 2 Mbit/s to 8 Mbit/s" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        sls.ChangeSls(pb.ChangeSlsRequest(customer_id="bob", service_class=pb.SERVICE_CLASS_GOLD,
                                          rate_bps=4 * M), metadata=auth(alice))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        pb_grpc.SlaServiceStub(env["channel"]).ListCustomers(pb.ListCustomersRequest(),
                                                             metadata=auth(alice))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for metadata in ((), auth("cems_forged_token")):
        with pytest.raises(grpc.RpcError) as err:
            sls.GetSls(pb.GetSlsRequest(customer_id="bob"), metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    audit = env["csm"].audit_log("bob")
    assert any(row[2] == "change_sls" and row[4] == "refused:PERMISSION_DENIED"
               and row[1].startswith("customer:alice") for row in audit)
    # bob's SLS is untouched
    assert env["csm"].current_sls("bob").service_class.value == "silver"


def test_admission_refuses_what_the_uplink_cannot_carry(env):
    create(env, "alice", 3, gold_max=8 * M)  # commits 10 Mbit/s (Silver max) of 25 on 5:1
    create(env, "bob", 4, gold_max=8 * M)    # 20 of 25
    stub = pb_grpc.SlaServiceStub(env["channel"])
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateCustomer(pb.CreateCustomerRequest(
            customer=pb.Customer(customer_id="carol", name="Carol", access_dpid=5, access_port=5),
            sla=sla("carol", gold_max=15 * M)), metadata=auth(env["manager"]))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "access port 0000000000000005:5 is not known" in err.value.details()
    assert env["csm"].count_customers() == 2  # carol was not stored
    with pytest.raises(grpc.RpcError) as err:
        stub.UpdateSla(pb.UpdateSlaRequest(sla=sla("bob", gold_max=20 * M)),
                       metadata=auth(env["manager"]))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == ("link 0000000000000005:1->0000000000000003: Gold/Silver "
                                   "committed would be 30 Mbit/s, above its capacity 25 Mbit/s by "
                                   "5 Mbit/s")
    assert env["csm"].sla("bob").bounds  # unchanged
    reply = stub.UpdateSla(pb.UpdateSlaRequest(sla=sla("bob", gold_max=5 * M)),
                           metadata=auth(env["manager"]))
    assert reply.sla.bounds[0].max_bps == 5 * M


def test_sla_update_clamps_the_current_sls(env):
    create(env, "alice", 3, interval=0)
    alice = customer_token(env, "alice")
    pb_grpc.SlsServiceStub(env["channel"]).ChangeSls(
        pb.ChangeSlsRequest(service_class=pb.SERVICE_CLASS_GOLD, rate_bps=8 * M),
        metadata=auth(alice))
    reply = pb_grpc.SlaServiceStub(env["channel"]).UpdateSla(
        pb.UpdateSlaRequest(sla=sla("alice", gold_max=4 * M)), metadata=auth(env["manager"]))
    assert (reply.sls.service_class, reply.sls.rate_bps) == (pb.SERVICE_CLASS_GOLD, 4 * M)


def test_restart_keeps_everything(env):
    create(env, "alice", 3)
    env["store"].close()
    again = CsmStore(Store(env["where"]))
    assert again.customer("alice").hosts == ("00:00:00:00:00:0a",)
    assert again.current_sls("alice").rate_bps == 2 * M
    assert [c.customer_id for c, _, _ in again.all_current_sls()] == ["alice"]
    env["store"] = again.store


def test_cemsctl_for_manager_and_customer(env, capsys, monkeypatch):
    server = f"127.0.0.1:{env['port']}"
    code = cli.main(["--server", server, "--token", env["manager"], "customer", "create", "dave",
                     "--name", "Dave", "--access", "5:3", "--host", "00:00:00:00:00:0b",
                     "--variant", "gsb-business", "--class", "gold:2M:8M",
                     "--class", "silver:2M:10M", "--class", "bronze:1M:20M",
                     "--min-change-interval", "0"])
    out = capsys.readouterr().out
    assert code == 0 and "SLS of dave: silver at 2 Mbit/s" in out
    cli.main(["--server", server, "--token", env["manager"], "token", "create", "customer",
              "--customer", "dave"])
    monkeypatch.setenv("CEMS_TOKEN", capsys.readouterr().out.splitlines()[-1])
    assert cli.main(["--server", server, "sls", "change", "gold", "8M"]) == 0
    assert "SLS of dave: gold at 8 Mbit/s" in capsys.readouterr().out
    assert cli.main(["--server", server, "sls", "change", "gold", "80M"]) == 1
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT: 80 Mbit/s is outside your gold bounds" in err


def test_report_over_grpc_and_cemsctl(env, capsys):
    create(env, "alice", 3)
    env["store"].record_availability(5, 0, True, 0.0)
    env["store"].record_availability(5, 3, True, 0.0)
    stub = pb_grpc.ReportServiceStub(env["channel"])
    reply = stub.GetReport(pb.GetReportRequest(customer_id="alice"), metadata=auth(env["manager"]))
    assert reply.availability == 1.0 and reply.availability_met
    assert not reply.HasField("throughput_bps")  # no meter statistics yet: unknown, not 0
    assert any("probe" in u for u in reply.unknown)
    # The switch reports alice's meter: 10 % of her packets were above her SLS.
    meter_id = env["csm"].customer_state("alice").meter_id
    assert meter_id == METER_BASE + 1
    env["state"].meters = {5: (MeterStatsView(5, meter_id, 2, (1000, 1_200_000, 100, 120_000),
                                              (100.0, 120_000.0, 10.0, 12_000.0)),)}
    reply = stub.GetReport(pb.GetReportRequest(customer_id="alice"), metadata=auth(env["manager"]))
    assert reply.throughput_bps == (120_000 - 12_000) * 8 and reply.policed_ratio == 0.1
    assert reply.target_delay_ms == 400 and "Y.1541" in reply.target_source  # Silver
    token = customer_token(env, "alice")
    with pytest.raises(grpc.RpcError) as err:
        stub.GetReport(pb.GetReportRequest(customer_id="bob"), metadata=auth(token))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert cli.main(["--server", f"127.0.0.1:{env['port']}", "--token", token, "report"]) == 0
    out = capsys.readouterr().out
    assert "Report of alice (gsb-business)" in out and "throughput 864,000 bit/s" in out
    assert "availability 100.0000% against 99.900% (met)" in out


def test_a_peer_domain_changes_its_sls_at_its_own_higher_rate(env):
    stub = pb_grpc.SlaServiceStub(env["channel"])
    stub.CreateCustomer(pb.CreateCustomerRequest(
        customer=pb.Customer(customer_id="isp-b", name="ISP B", segment="peer-domain",
                             access_dpid=5, access_port=4),
        sla=sla("isp-b", interval=0.0)), metadata=auth(env["manager"]))
    token = stub.CreateToken(pb.CreateTokenRequest(role=pb.ROLE_PEER_DOMAIN, customer_id="isp-b"),
                             metadata=auth(env["manager"])).token
    sls = pb_grpc.SlsServiceStub(env["channel"])
    for rate in (3 * M, 4 * M, 5 * M):  # back to back: its SLA allows it
        reply = sls.ChangeSls(pb.ChangeSlsRequest(service_class=pb.SERVICE_CLASS_GOLD,
                                                  rate_bps=rate), metadata=auth(token))
        assert reply.sls.rate_bps == rate
    with pytest.raises(grpc.RpcError) as err:
        sls.GetSls(pb.GetSlsRequest(customer_id="alice"), metadata=auth(token))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_report_measures_throughput_from_the_reading_at_the_periods_start(env):
    import time
    create(env, "alice", 3)
    meter_id = env["csm"].customer_state("alice").meter_id
    start = time.time() - 3600
    env["store"].save_meter_readings([(5, meter_id, start - 10, 0, 0, 0, 0)])
    env["state"].meters = {5: (MeterStatsView(5, meter_id, 2, (1000, 3_600_000, 0, 0),
                                              (1.0, 999.0, 0.0, 0.0)),)}
    stub = pb_grpc.ReportServiceStub(env["channel"])
    reply = stub.GetReport(pb.GetReportRequest(customer_id="alice", start_unix_s=start),
                           metadata=auth(env["manager"]))
    assert reply.throughput_bps == pytest.approx(3_600_000 * 8 / 3610, rel=0.01)
    assert reply.throughput_since_unix_s == pytest.approx(start - 10)
    assert not any("latest rate" in u for u in reply.unknown)
