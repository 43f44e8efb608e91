"""MirrorService over real gRPC with the real store, token interceptor and audit."""

import grpc
import pytest
from cems.v1 import probe_pb2 as pb
from cems.v1 import probe_pb2_grpc as pb_grpc

from controller import cli
from controller.api.server import serve_grpc
from controller.config import Address
from controller.csm.model import ClassBounds, Customer, Role, ServiceClass, Sla
from controller.csm.rules import initial_sls
from controller.csm.store import CsmStore
from controller.monitor.mirror_rules import MirrorRules
from controller.monitor.mirror import MirrorRule
from controller.state import PublishedState
from controller.store import Store


@pytest.fixture
def env(tmp_path):
    path = str(tmp_path / "cems.sqlite")
    store = Store(path)
    csm = CsmStore(store)
    sla = Sla("alice", "gsb-business", {ServiceClass.SILVER: ClassBounds(1, 2)})
    for customer_id in ("alice", "bob"):
        own = Sla(customer_id, sla.variant, sla.bounds)
        csm.create_customer(Customer(customer_id, customer_id, access_dpid=1, access_port=3),
                            own, initial_sls(own, 0), lambda c: None)
    mirror = MirrorRules(store, (MirrorRule("bob", origin="config"),), probe=(2, 10))
    server, port = serve_grpc(PublishedState(1.0, "os_ken"), Address("127.0.0.1", 0), csm=csm,
                              mirror=mirror)
    _, token = csm.create_token(Role.DOMAIN_MANAGER)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield {"stub": pb_grpc.MirrorServiceStub(channel), "token": token, "mirror": mirror,
           "csm": csm, "path": path, "port": port}
    channel.close()
    server.stop(0)
    store.close()


def call(env, method, request, token=None):
    token = env["token"] if token is None else token
    return getattr(env["stub"], method)(request, metadata=(("authorization", f"Bearer {token}"),))


def code(env, method, request, token=None):
    with pytest.raises(grpc.RpcError) as err:
        call(env, method, request, token)
    return err.value.code(), err.value.details()


def test_rules_are_set_listed_removed_and_survive_a_restart(env):
    reply = call(env, "SetMirrorRule", pb.MirrorRule(customer_id="alice", service="voice",
                                                     sample_percent=0))
    assert (reply.sample_percent, reply.origin) == (100, "api")  # 0 means all
    call(env, "SetMirrorRule", pb.MirrorRule(customer_id="alice", sample_percent=25))
    listed = call(env, "ListMirrorRules", pb.ListMirrorRulesRequest())
    assert (listed.probe_dpid, listed.probe_port) == (2, 10)
    assert [(r.customer_id, r.service, r.sample_percent, r.origin) for r in listed.rules] == [
        ("alice", "", 25, "api"), ("alice", "voice", 100, "api"), ("bob", "", 100, "config")]
    # a new controller on the same store mirrors the same
    again = MirrorRules(Store(env["path"]), (), probe=(2, 10))
    assert [r.key for r in again.rules()] == [("alice", ""), ("alice", "voice")]
    call(env, "RemoveMirrorRule", pb.RemoveMirrorRuleRequest(customer_id="alice"))
    assert [r.key for r in env["mirror"].rules()] == [("alice", "voice"), ("bob", "")]
    assert any(row[2] == "manage" and row[4] == "ok" for row in env["csm"].audit_log("alice"))


@pytest.mark.parametrize("method, request_, expected, words", [
    ("SetMirrorRule", pb.MirrorRule(customer_id="alice", service="telepathy"),
     grpc.StatusCode.INVALID_ARGUMENT, "not one of"),
    ("SetMirrorRule", pb.MirrorRule(customer_id="alice", sample_percent=101),
     grpc.StatusCode.INVALID_ARGUMENT, "1..100"),
    ("SetMirrorRule", pb.MirrorRule(customer_id="carol"), grpc.StatusCode.NOT_FOUND, "carol"),
    ("RemoveMirrorRule", pb.RemoveMirrorRuleRequest(customer_id="bob"),
     grpc.StatusCode.FAILED_PRECONDITION, "config file"),
    ("RemoveMirrorRule", pb.RemoveMirrorRuleRequest(customer_id="alice", service="web"),
     grpc.StatusCode.NOT_FOUND, "no mirror rule"),
])
def test_refusals_name_the_problem_and_change_nothing(env, method, request_, expected, words):
    status, details = code(env, method, request_)
    assert status == expected and words in details
    assert [r.key for r in env["mirror"].rules()] == [("bob", "")]


def test_only_a_domain_manager_may_mirror(env):
    _, alice = env["csm"].create_token(Role.CUSTOMER, "alice")
    status, _ = code(env, "SetMirrorRule", pb.MirrorRule(customer_id="alice"), token=alice)
    assert status == grpc.StatusCode.PERMISSION_DENIED
    status, _ = code(env, "ListMirrorRules", pb.ListMirrorRulesRequest(), token="")
    assert status == grpc.StatusCode.UNAUTHENTICATED


def test_cemsctl_mirror(env, capsys):
    base = ["--server", f"127.0.0.1:{env['port']}", "--token", env["token"], "mirror"]
    assert cli.main(base + ["set", "alice", "--service", "iptv", "--sample", "50"]) == 0
    assert "iptv traffic of alice, 50% of host pairs" in capsys.readouterr().out
    assert cli.main(base + ["list"]) == 0
    out = capsys.readouterr().out
    assert "2 mirror rules, to probe port 0000000000000002:10" in out and "(from config)" in out
