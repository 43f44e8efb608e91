"""PolicyService over real gRPC: the decision log as each principal may see it, the mode,
and taking an action back by hand."""

import dataclasses
import json

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


@pytest.fixture
def asking(world):
    """The world's congested snapshot as the latest, with addresses for its hosts."""
    from controller.network.topology import HostInfo, TopologySnapshot
    from tests.unit.controller.policy.world import B, G_PHONE, HOSTS, V, Z_PC
    served, policy, _, _ = world
    addresses = {V: "10.0.0.10", B: "10.0.0.11", G_PHONE: "10.0.0.1", Z_PC: "10.0.0.2"}
    policy.state.topology = TopologySnapshot(hosts=tuple(
        HostInfo(mac, dpid, port, (addresses[mac],)) for mac, (dpid, port) in HOSTS.items()))
    policy.directory.customer_of_macs = lambda: {G_PHONE: "g", Z_PC: "z"}
    policy._latest = (float("inf"), snapshot())   # pylint: disable=protected-access
    return served, policy


def test_what_if_predicts_a_proposed_meter_and_is_the_managers(asking):
    served, _ = asking
    stub = pb_grpc.PolicyServiceStub(served.channel)
    answer = stub.WhatIf(pb.WhatIfRequest(kind="meter", customer_id="z", rate_bps=20_000_000))
    link = answer.elements[0]
    assert link.utilisation_before > 1 > 0.8 > link.utilisation_after
    assert link.scores_after["g/voice"] > 4.03 > link.scores_before["g/voice"]
    assert "M/M/1/K" in answer.model and "capped at a proposed rate" in answer.assumption
    for request, code, text in (
            (pb.WhatIfRequest(kind="shape", customer_id="z"), "INVALID_ARGUMENT",
             "must be one of meter, priority, sls, reroute"),
            (pb.WhatIfRequest(kind="reroute", customer_id="z", element="nowhere"),
             "FAILED_PRECONDITION", "names the element to go around"),
            (pb.WhatIfRequest(kind="meter", customer_id="nobody", rate_bps=1),
             "FAILED_PRECONDITION", "no contract"),
            (pb.WhatIfRequest(kind="meter", customer_id="z", rate_bps=10 ** 13),
             "INVALID_ARGUMENT", "rate_bps")):
        with pytest.raises(grpc.RpcError) as refused:
            stub.WhatIf(request)
        assert refused.value.code().name == code and text in refused.value.details()
    with served.connect(served.token(Role.CUSTOMER, "z")) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.PolicyServiceStub(channel).WhatIf(
                pb.WhatIfRequest(kind="sls", customer_id="z", rate_bps=1))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_refused_session_is_answered_logged_once_and_counted(asking):
    served, policy = asking
    stub = pb_grpc.PolicyServiceStub(served.channel)
    request = pb.AdmitSessionRequest(service="iptv", rate_bps=4_000_000,
                                     src_address="10.0.0.10", dst_address="10.0.0.2")
    first = stub.AdmitSession(request)
    assert not first.admitted and first.customer_id == "z" and first.decision_seq > 0
    assert "admission limit 90%" in first.reason and first.prediction.utilisation_after > 1
    again = stub.AdmitSession(request)
    assert again.decision_seq == first.decision_seq   # the log is not flooded
    logged = stub.ListDecisions(pb.ListDecisionsRequest(kinds=["refuse"],
                                                        customer_id="z")).decisions
    assert [d.intent_kind for d in logged] == ["admission"]
    assert logged[0].seq == first.decision_seq
    gold = stub.AdmitSession(pb.AdmitSessionRequest(
        service="iptv", rate_bps=4_000_000, src_address="10.0.0.10", dst_address="10.0.0.1"))
    assert gold.admitted and gold.decision_seq == 0
    # a customer asks for its own hosts only; nonsense is refused with the field named
    with served.connect(served.token(Role.CUSTOMER, "g")) as channel:
        mine = pb_grpc.PolicyServiceStub(channel)
        assert mine.AdmitSession(pb.AdmitSessionRequest(
            service="iptv", rate_bps=1, src_address="10.0.0.10",
            dst_address="10.0.0.1")).admitted
        with pytest.raises(grpc.RpcError) as refused:
            mine.AdmitSession(request)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for bad, text in ((pb.AdmitSessionRequest(service="ftp", rate_bps=1), "service"),
                      (pb.AdmitSessionRequest(service="iptv", rate_bps=1,
                                              src_address="x"), "src_address")):
        with pytest.raises(grpc.RpcError) as refused:
            stub.AdmitSession(bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and \
            text in refused.value.details()
    with pytest.raises(grpc.RpcError) as unknown:
        stub.AdmitSession(pb.AdmitSessionRequest(service="iptv", rate_bps=1,
                                                 src_address="10.9.9.9",
                                                 dst_address="10.0.0.1"))
    assert unknown.value.code() == grpc.StatusCode.FAILED_PRECONDITION and \
        "no host with address 10.9.9.9" in unknown.value.details()


def test_advice_follows_the_room_on_the_path_and_a_change_is_logged(asking):
    from tests.unit.controller.policy.world import L24, with_video
    served, policy = asking
    policy._latest = (float("inf"),   # pylint: disable=protected-access
                      with_video(snapshot(bulk_bps=20e6, degraded=False)))
    stub = pb_grpc.PolicyServiceStub(served.channel)
    advice = stub.GetAdvice(pb.GetAdviceRequest(address="10.0.0.1"))
    assert advice.customer_id == "g" and 3.8e6 < advice.bitrate_bps < 4e6
    assert advice.element == L24
    stub.GetAdvice(pb.GetAdviceRequest(address="10.0.0.1"))
    advised = stub.ListDecisions(pb.ListDecisionsRequest(kinds=["advise"])).decisions
    assert len(advised) == 1 and "should stay at or below" in advised[0].reason
    with pytest.raises(grpc.RpcError) as nobody:
        stub.GetAdvice(pb.GetAdviceRequest(address="10.0.0.10"))   # a server, no customer's
    assert nobody.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_cemsctl_what_if_and_admit_say_it_for_people(asking, capsys, monkeypatch):
    from controller import cli
    served, _ = asking
    monkeypatch.setenv("CEMS_TOKEN", served.manager)
    assert cli.main(["--server", served.address, "what-if", "meter", "z", "--rate",
                     "20M"]) == 0
    out = capsys.readouterr().out
    assert "assumed: the traffic stays what it is now" in out
    assert "utilisation 110% -> 67%" in out and "g/voice:" in out
    assert cli.main(["--server", served.address, "admit", "iptv", "--rate", "4M", "--sender",
                     "10.0.0.10", "--receiver", "10.0.0.2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("REFUSED for z: refused: a new iptv session of 4.0 Mbit/s")
    assert "in `cemsctl decisions`" in out
    assert cli.main(["--server", served.address, "decisions", "--kind", "refuse"]) == 0
    assert "refuse admission of z's traffic" in capsys.readouterr().out


def test_the_video_player_follows_the_advice_over_grpc(asking):
    """cems-probe video-player --controller, as a process with a probe token, against the
    advice of the world where its path is short of room."""
    import os
    import subprocess
    import sys
    from controller.network.topology import HostInfo
    from probes.video import SegmentServer
    from tests.unit.controller.policy.world import G_PHONE, with_video
    served, policy = asking
    hosts = tuple(HostInfo(h.mac, h.dpid, h.port_no, h.ipv4 + ("127.0.0.1",))
                  if h.mac == G_PHONE else h for h in policy.state.topology.hosts)
    policy.state.topology = dataclasses.replace(policy.state.topology, hosts=hosts)
    policy._latest = (float("inf"),   # pylint: disable=protected-access
                      with_video(snapshot(bulk_bps=20e6, degraded=False)))
    server = SegmentServer("127.0.0.1", 0, segment_s=0.3, segments=6).start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "probes.cli", "video-player", "--url",
             f"http://127.0.0.1:{server.address[1]}/", "--startup", "0.5", "--max-buffer",
             "1", "--controller", served.address], capture_output=True, text=True, timeout=60,
            env={**os.environ, "CEMS_TOKEN": served.token(Role.PROBE, "player")})
    finally:
        server.stop()
    session = json.loads(done.stdout.splitlines()[0])
    assert done.returncode == 0, done.stderr
    assert session["advised_segments"] == 6 and max(session["bitrates_bps"]) <= 2_000_000


def test_gen_iptv_sends_nothing_when_admission_refuses(asking, monkeypatch, capsys):
    from probes import cli as probe_cli
    served, _ = asking
    monkeypatch.setenv("CEMS_TOKEN", served.token(Role.PROBE, "headend"))
    monkeypatch.setattr(probe_cli, "local_address_towards", lambda url: "10.0.0.10")
    sent = []
    monkeypatch.setattr(probe_cli, "send_iptv", lambda *a: sent.append(a))
    code = probe_cli.main(["gen-iptv", "--target", "10.0.0.2:5004", "--seconds", "1",
                           "--controller", served.address])
    refused = json.loads(capsys.readouterr().out)
    assert code == 3 and not sent
    assert refused["customer_id"] == "z" and "admission limit" in refused["refused"]
    assert refused["decision_seq"] > 0
