"""PolicyService over real gRPC: the decision log as each principal may see it, the mode,
and taking an action back by hand."""

import dataclasses

import grpc
import pytest
from cems.v1 import policy_pb2 as pb
from cems.v1 import policy_pb2_grpc as pb_grpc

from controller.config import parse_config
from controller.csm.model import ClassBounds, Customer, Role, ServiceClass, Sla
from controller.csm.rules import initial_sls
from controller.monitor.directory import CustomerDirectory
from controller.policy.compile import PolicyFlows
from controller.policy.engine import PolicyConfig, PolicyMemory, decide
from controller.policy.model import Decision
from controller.policy_loop import PolicyLoop
from controller.state import PublishedState

from tests.unit.controller.policy.world import snapshot
from tests.unit.controller.served import Served


@pytest.fixture
def world():
    state = PublishedState(1.0, "os_ken")
    flows = PolicyFlows()
    changed = []
    policy = PolicyLoop(None, None, state, parse_config({}), CustomerDirectory(),
                        lambda customer: None, flows, lambda: changed.append(1))
    evaluation = decide(snapshot(), PolicyMemory(), PolicyConfig())
    policy.memory = evaluation.memory
    policy._hand_over()   # pylint: disable=protected-access
    policy.log.add(evaluation.decisions)
    policy.log.add([Decision(1001.0, "refuse", 0, "", "link x", "", "about someone else",
                             for_customers=("other",))])
    served = Served(state, policy=policy)
    for customer in ("g", "z", "other"):
        sla = Sla(customer, "gsb-business", {ServiceClass.SILVER: ClassBounds(1, 10 ** 7)})
        served.csm.create_customer(Customer(customer, customer), sla, initial_sls(sla, 0.0),
                                   lambda committed: None)
    yield served, policy, flows, changed
    served.close()


def test_the_manager_sees_every_decision_and_a_customer_those_for_it(world):
    served, _, _, _ = world
    stub = pb_grpc.PolicyServiceStub(served.channel)
    every = stub.ListDecisions(pb.ListDecisionsRequest())
    assert [d.kind for d in every.decisions] == ["act", "refuse"] and every.last_seq == 2
    act = every.decisions[0]
    assert act.intent_kind == "meter" and act.customer_id == "z" and \
        list(act.for_customers) == ["g"] and act.predicted["utilisation_after"] <= 0.8
    for customer, kinds in (("g", ["act"]), ("z", ["act"]), ("other", ["refuse"])):
        with served.connect(served.token(Role.CUSTOMER, customer)) as channel:
            mine = pb_grpc.PolicyServiceStub(channel).ListDecisions(
                pb.ListDecisionsRequest(customer_id=""))
            assert [d.kind for d in mine.decisions] == kinds, customer
            # asking for someone else's is refused, not widened
            with pytest.raises(grpc.RpcError) as refused:
                pb_grpc.PolicyServiceStub(channel).ListDecisions(
                    pb.ListDecisionsRequest(customer_id="nobody"))
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert [d.seq for d in stub.ListDecisions(pb.ListDecisionsRequest(after_seq=1)).decisions] \
        == [2]


def test_mode_and_revert_are_the_managers_and_say_what_is_wrong(world):
    served, policy, flows, changed = world
    stub = pb_grpc.PolicyServiceStub(served.channel)
    status = stub.GetPolicy(pb.GetPolicyRequest())
    assert status.mode == "act" and [a.intent_kind for a in status.actions] == ["meter"]
    with served.connect(served.token(Role.CUSTOMER, "g")) as channel:
        customer = pb_grpc.PolicyServiceStub(channel)
        assert [a.customer_id for a in customer.GetPolicy(pb.GetPolicyRequest()).actions] \
            == ["z"]   # made for g
        with pytest.raises(grpc.RpcError) as refused:
            customer.SetPolicyMode(pb.SetPolicyModeRequest(mode="off"))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as bad:
        stub.SetPolicyMode(pb.SetPolicyModeRequest(mode="maybe"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "act, dry-run, off" in bad.value.details()
    assert stub.SetPolicyMode(pb.SetPolicyModeRequest(mode="dry-run")).mode == "dry-run"
    with pytest.raises(grpc.RpcError) as missing:
        stub.RevertAction(pb.RevertActionRequest(action_id=99))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    action_id = status.actions[0].action_id
    assert flows.actions and not stub.RevertAction(
        pb.RevertActionRequest(action_id=action_id)).actions
    assert not flows.actions and changed == [1, 1]
    last = stub.ListDecisions(pb.ListDecisionsRequest(kinds=["revert"])).decisions[-1]
    assert "taken back by hand by domain-manager" in last.reason
    held = dict(policy.memory.held)
    assert any(key.startswith("meter|") for key in held)
    outcomes = [row for row in served.csm.audit_log(limit=20) if "manage" in row]
    assert sum("ok" in row for row in outcomes) == 2, outcomes   # the mode and the revert
    assert any("refused:INVALID_ARGUMENT" in row for row in outcomes)
    assert any("refused:NOT_FOUND" in row for row in outcomes)
