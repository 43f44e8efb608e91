"""Active STAMP tests: the controller's bookkeeping, and a real agent over real gRPC on
127.0.0.1 that sends to its own reflector."""

import threading

import grpc
import pytest
from cems.v1 import probe_pb2 as pb
from cems.v1 import probe_pb2_grpc as pb_grpc

from client.channel import Credentials
from controller import cli
from controller.monitor.active import ActiveTestError, ActiveTests, StampSpec
from controller.api.server import serve_grpc
from controller.config import Address
from controller.csm.model import Role
from controller.csm.store import CsmStore
from lab.emulation import wait_for
from controller.monitor.kpis import KpiStore
from controller.state import PublishedState
from controller.store import Store
from probes.agent import ProbeAgent
from probes.export import RecordExporter
from probes.stamp_io import Reflector


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def test_tests_are_queued_for_their_agent_and_resent_after_a_reconnect():
    clock = Clock()
    active = ActiveTests(clock)
    with pytest.raises(ActiveTestError, match="not connected.*cems-probe agent") as err:
        active.start(StampSpec("", "a1", "10.0.0.2"))
    assert err.value.code == "FAILED_PRECONDITION"
    tasks = active.connect("a1")
    counted = active.start(StampSpec("", "a1", "10.0.0.2", count=100, interval_s=0.01))
    forever = active.start(StampSpec("t2", "a1", "10.0.0.3"))
    assert forever.ends_unix_s() is None
    assert counted.spec.test_id == "stamp-1" and tasks.get_nowait() == ("start", counted.spec)
    tasks.get_nowait()
    again = active.connect("a1")  # the agent restarted: the old stream ends, tests come back
    assert tasks.get_nowait() is None
    assert [again.get_nowait()[1].test_id for _ in range(2)] == ["stamp-1", "t2"]
    clock.now += 100 * 0.01 + 2.5
    assert [t.state for t in active.tests()] == ["finished", "running"]
    assert active.stop("t2").state == "stopped" and again.get_nowait() == ("stop", "t2")
    with pytest.raises(ActiveTestError, match="exists already"):
        active.start(StampSpec("t2", "a1", "10.0.0.3"))


@pytest.mark.parametrize("spec, words", [
    (StampSpec("", "a1", "example.com"), "not an IPv4 address"),
    (StampSpec("", "a1", "10.0.0.2", reflector_port=0), "reflector_port"),
    (StampSpec("", "a1", "10.0.0.2", interval_s=0), "interval_s"),
    (StampSpec("", "", "10.0.0.2"), "sender_probe_id"),
])
def test_impossible_tests_are_refused_with_the_reason(spec, words):
    active = ActiveTests()
    active.connect("a1")
    with pytest.raises(ActiveTestError, match=words) as err:
        active.start(spec)
    assert err.value.code == "INVALID_ARGUMENT" and not active.tests()


@pytest.fixture
def controller(tmp_path):
    store = Store(str(tmp_path / "cems.sqlite"))
    csm = CsmStore(store)
    kpis = KpiStore()
    server, port = serve_grpc(PublishedState(1.0, "os_ken"), Address("127.0.0.1", 0), csm=csm,
                              kpis=kpis)
    _, token = csm.create_token(Role.DOMAIN_MANAGER)
    _, agent_token = csm.create_token(Role.PROBE, probe_id="agent-1")
    yield {"port": port, "kpis": kpis, "token": token, "csm": csm,
           "agent": Credentials(agent_token)}
    server.stop(0)
    store.close()


def test_an_agent_runs_counted_and_open_ended_tests_started_over_grpc(controller, capsys):
    address = f"127.0.0.1:{controller['port']}"
    stop = threading.Event()
    reflector = Reflector("127.0.0.1", 0)
    exporter = RecordExporter(address, "agent-1", interval_s=0.05,
                              credentials=controller["agent"]).start()
    agent = ProbeAgent(address, "", exporter.offer, credentials=controller["agent"])
    threads = [threading.Thread(target=reflector.serve, args=(stop,)),
               threading.Thread(target=agent.serve, args=(stop,))]
    for thread in threads:
        thread.start()
    metadata = (("authorization", f"Bearer {controller['token']}"),)
    try:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.ActiveTestServiceStub(channel)
            wait_for(agent.connected.is_set, 10, "the agent to connect")
            port = reflector.address[1]
            started = stub.StartStampTest(pb.StampTestSpec(
                sender_probe_id="agent-1", reflector_address="127.0.0.1", reflector_port=port,
                count=60, interval_s=0.01, report_interval_s=0.3), metadata=metadata)
            assert started.state == "running"

            def sent():
                return sum(r.kpis["stamp_sent"] for r in controller["kpis"].everything()
                           if r.kind == "stamp")
            wait_for(lambda: sent() == 60, 15, "60 STAMP packets reported")
            records = [r for r in controller["kpis"].everything() if r.kind == "stamp"]
            assert len(records) == 2  # one record per 0.3 s round of 30 packets
            assert all(r.kpis["stamp_lost"] == 0 and 0 < r.kpis["stamp_rtt_ms"] < 100
                       for r in records)
            assert len({r.sport for r in records}) == 1  # one local port per test

            endless = stub.StartStampTest(pb.StampTestSpec(
                test_id="endless", sender_probe_id="agent-1", reflector_address="127.0.0.1",
                reflector_port=port, report_interval_s=0.2), metadata=metadata)
            assert endless.spec.count == 0
            wait_for(lambda: sent() > 100, 15, "the open-ended test to report")
            assert stub.StopStampTest(pb.StopStampTestRequest(test_id="endless"),
                                      metadata=metadata).state == "stopped"
            wait_for(lambda: agent.tests["endless"].is_set(), 5, "the agent to stop the test")
            listed = stub.ListStampTests(pb.ListStampTestsRequest(), metadata=metadata)
            assert {t.spec.test_id: t.state for t in listed.tests}["endless"] == "stopped"
            assert listed.tests[-1].latest.kpis["stamp_rtt_ms"] > 0
            with pytest.raises(grpc.RpcError) as err:
                stub.StopStampTest(pb.StopStampTestRequest(test_id="nope"), metadata=metadata)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as err:
                stub.ListStampTests(pb.ListStampTestsRequest())
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert cli.main(["--server", address, "--token", controller["token"], "stamp",
                         "list"]) == 0
        assert "endless: agent-1 -> 127.0.0.1" in capsys.readouterr().out
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        exporter.close()
    assert not agent.errors


def test_an_agent_comes_back_after_the_controller_restarts_and_takes_new_tests(tmp_path):
    from lab.emulation import free_port
    port = free_port()
    address = f"127.0.0.1:{port}"

    csm = CsmStore(Store(str(tmp_path / "cems.sqlite")))  # what survives the restart
    _, token = csm.create_token(Role.PROBE, probe_id="agent-9")

    def controller():
        active = ActiveTests()
        server, _ = serve_grpc(PublishedState(1.0, "os_ken"), Address("127.0.0.1", port),
                               csm=csm, kpis=KpiStore(), active=active)
        return server, active
    server, active = controller()
    stop = threading.Event()
    agent = ProbeAgent(address, "agent-9", lambda records: None, max_backoff_s=0.5,
                       credentials=Credentials(token))
    thread = threading.Thread(target=agent.serve, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: active.connected() == ["agent-9"], 10, "the agent to connect")
        server.stop(0)
        wait_for(lambda: not agent.connected.is_set(), 10, "the agent to notice")
        server, active = controller()  # a new controller process on the same address
        wait_for(lambda: active.connected() == ["agent-9"], 15, "the agent to reconnect")
        reflector = Reflector("127.0.0.1", 0)
        threading.Thread(target=reflector.serve, args=(stop,), daemon=True).start()
        active.start(StampSpec("after", "agent-9", "127.0.0.1", reflector.address[1], count=5))
        wait_for(lambda: "after" in agent.tests, 10, "the new test to reach the agent")
        wait_for(lambda: reflector.reflected == 5, 10, "its 5 packets to be reflected")
    finally:
        stop.set()
        thread.join(timeout=10)
        server.stop(0)
        csm.store.close()
