"""Bad input at every boundary gets INVALID_ARGUMENT naming the field and the allowed range,
with the offending value cut short, and nothing is stored."""

import math

import grpc
import pytest
from cems.v1 import customer_pb2 as cpb
from cems.v1 import customer_pb2_grpc as cpb_grpc
from cems.v1 import probe_pb2 as pb
from cems.v1 import probe_pb2_grpc as pb_grpc

from controller.api.convert import health_from_pb
from controller.csm.model import ClassBounds, Customer, Role, ServiceClass, Sla
from controller.csm.rules import Refused, check_customer, check_sla
from controller.monitor.active import StampSpec, check_spec
from controller.monitor.kpis import KpiRecord, KpiStore, check_record
from controller.monitor.mirror import MirrorRule, check_rule
from controller.state import PublishedState

from tests.unit.controller.fakes import build_topology
from tests.unit.controller.served import Served

BIG = (1 << 64) - 1


def record(**kw) -> KpiRecord:
    base = dict(probe_id="p", src="10.0.0.1", dst="10.0.0.2", proto=17, sport=4000, dport=5004,
                kind="rtp", interval_start_unix_s=1.0, interval_end_unix_s=2.0, packets=50,
                bytes=10_000, throughput_bps=80_000.0, dscp=46, kpis={})
    base.update(kw)
    return KpiRecord(**base)


@pytest.mark.parametrize("changes, words", [
    ({"src": "not-an-ip" * 100}, "is not an IPv4 or IPv6 address"),
    ({"dst": "10.0.0.300"}, "is not an IPv4"),
    ({"sport": 70_000}, "0..65535"), ({"proto": 300}, "protocol 0..255"),
    ({"packets": 1, "bytes": BIG}, "in one interval"),
    ({"kpis": {f"k{i}": 1.0 for i in range(65)}}, "more than 64"),
    ({"kpis": {"Bad Name": 1.0}}, "lower-case"), ({"kpis": {"x" * 500: 1.0}}, "..."),
    ({"kpis": {"rtp_expected": 1e300}}, "beyond any possible value"),
    ({"interval_start_unix_s": 1e12, "interval_end_unix_s": 1e12}, "unix time span"),
    ({"interval_end_unix_s": 1e6}, "at most a day"),
    ({"throughput_bps": 1e15}, "10 Tbit/s"),
])
def test_impossible_records_are_refused_naming_what(changes, words):
    problem = check_record(record(**changes))
    assert words in problem and len(problem) < 300
    assert check_record(record(src="2001:db8::1", dst="2001:db8::2")) == ""


def test_health_counters_saturate_and_its_source_is_cut():
    health = health_from_pb("p", pb.ProbeHealth(frames=BIG, source="s" * 5000,
                                                time_unix_s=math.nan))
    assert health.frames == (1 << 63) - 1 and len(health.source) < 300 and health.time_unix_s == 0


@pytest.mark.parametrize("customer, words", [
    (Customer("c" * 65, "x"), "1 to 64"), (Customer("c-é", "x"), "1 to 64"),
    (Customer("c1", "n" * 201), "name is 201 characters"),
    (Customer("c1", "x", hosts=tuple(f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"
                                     for i in range(65))), "hosts has 65 entries"),
    (Customer("c1", "x", access_port=0xFFFFFFFF), "access_port"),
])
def test_customers_out_of_bounds_are_refused(customer, words):
    with pytest.raises(Refused, match=words) as refused:
        check_customer(customer)
    assert refused.value.code == "INVALID_ARGUMENT"


def test_slas_out_of_bounds_are_refused():
    with pytest.raises(Refused, match="1 Tbit/s"):
        check_sla(Sla("c1", "gsb-business", {ServiceClass.SILVER: ClassBounds(1, 10 ** 13)}), None)
    with pytest.raises(Refused, match="a year"):
        check_sla(Sla("c1", "gsb-business", {ServiceClass.SILVER: ClassBounds(1, 2)},
                      min_change_interval_s=1e9), None)


def test_stamp_specs_and_mirror_rules_out_of_bounds_are_refused():
    assert "test_id" in check_spec(StampSpec("x" * 80, "a1", "10.0.0.2"))
    assert "sender_probe_id" in check_spec(StampSpec("t1", "a b", "10.0.0.2"))
    assert "longer than 64" in check_rule(MirrorRule("c" * 100))


@pytest.fixture
def served():
    state = PublishedState(1.0, "os_ken")
    state.topology = build_topology({1: 4}, []).snapshot()
    server = Served(state, kpis=KpiStore(), capacities={(1, 1): 10 ** 9})
    yield server
    server.close()


def test_a_mistyped_mac_is_refused_at_the_api_and_nothing_is_stored(served):
    stub = cpb_grpc.SlaServiceStub(served.channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateCustomer(cpb.CreateCustomerRequest(
            customer=cpb.Customer(customer_id="c1", name="C1", access_dpid=1, access_port=1,
                                  hosts=["00:00:00:00:00:01", "00:00:00:00:0:2"]),
            sla=cpb.Sla(customer_id="c1", variant="gsb-business", bounds=[cpb.ClassBounds(
                service_class=cpb.SERVICE_CLASS_SILVER, min_bps=1, max_bps=2)])))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "hosts[1] '00:00:00:00:0:2' is not a MAC address" in err.value.details()
    assert served.csm.count_customers() == 0


def test_a_report_period_that_is_not_a_time_is_refused(served):
    stub = cpb_grpc.ReportServiceStub(served.channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetReport(cpb.GetReportRequest(customer_id="c1", end_unix_s=math.nan))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unix time" in \
        err.value.details()


def test_too_many_records_in_one_request_are_refused_whole(served):
    with served.connect(served.token(Role.PROBE, "p1")) as channel:
        stub = pb_grpc.ProbeServiceStub(channel)
        one = pb.FlowRecord(src="10.0.0.1", dst="10.0.0.2", proto=17, kind="udp",
                            interval_start_unix_s=1, interval_end_unix_s=2)
        with pytest.raises(grpc.RpcError) as err:
            stub.ExportRecords(iter([pb.ExportRecordsRequest(records=[one] * 10_001)]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "send them in batches" in err.value.details()
