"""Held streams and health watchers never starve unary calls (a real server, in process)."""

import threading
import time

import grpc
import pytest
from cems.v1 import status_pb2 as pb
from cems.v1 import status_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controller.api.limits import client_of
from controller.state import PublishedState
from lab.emulation import wait_for

from tests.unit.controller.served import Served


@pytest.fixture
def server():
    state = PublishedState(1.0, "os_ken")
    served = Served(state, max_workers=24, max_streams=16, max_streams_per_client=100)
    yield state, served.server, served.channel, served.port
    served.close()


def get_status_ms(channel) -> float:
    started = time.monotonic()
    pb_grpc.StatusServiceStub(channel).GetStatus(pb.GetStatusRequest(), timeout=2)
    return (time.monotonic() - started) * 1000


def test_held_streams_beyond_the_limit_are_refused_and_unary_calls_still_answer(server):
    state, running, channel, _ = server
    stub = pb_grpc.StatusServiceStub(channel)
    streams = [stub.WatchEvents(pb.WatchEventsRequest()) for _ in range(40)]
    try:
        wait_for(lambda: len(state.bus) == 16, 10, "16 watchers to be held")
        wait_for(lambda: sum(s.done() for s in streams) == 24, 10, "24 streams to be refused")
        codes = {s.code() for s in streams if s.done()}
        assert codes == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert "grpc.max_streams" in next(s for s in streams if s.done()).details()
        assert max(get_status_ms(channel) for _ in range(20)) < 2000  # within its deadline
        assert running.limits.open_streams() == 16 and running.limits.refused_total == 24
    finally:
        for stream in streams:
            stream.cancel()
    wait_for(lambda: running.limits.open_streams() == 0, 10, "the streams to be released")


def test_many_short_health_watches_do_not_freeze_the_server(server):
    _, running, channel, port = server
    stop = threading.Event()
    errors = []

    def watch_briefly():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as own:
            health = health_pb2_grpc.HealthStub(own)
            while not stop.is_set():
                call = health.Watch(health_pb2.HealthCheckRequest(), timeout=5)
                try:
                    next(call)
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        errors.append(err.code())
                call.cancel()
    threads = [threading.Thread(target=watch_briefly) for _ in range(24)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        assert max(get_status_ms(channel) for _ in range(20)) < 2000
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                         timeout=2)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert errors == []
    running.set_serving(False)  # a watcher sees a change
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=5)
    assert next(call).status == health_pb2.HealthCheckResponse.NOT_SERVING
    running.set_serving(True)
    assert next(call).status == health_pb2.HealthCheckResponse.SERVING
    call.cancel()


def test_one_client_may_hold_only_its_share():
    served = Served(PublishedState(1.0, "os_ken"), max_workers=24, max_streams=16,
                    max_streams_per_client=3)
    try:
        stub = pb_grpc.StatusServiceStub(served.channel)
        streams = [stub.WatchEvents(pb.WatchEventsRequest()) for _ in range(5)]
        wait_for(lambda: sum(s.done() for s in streams) == 2, 10, "2 refusals")
        refused = [s for s in streams if s.done()]
        assert all("grpc.max_streams_per_client" in s.details() for s in refused)
        for stream in streams:
            stream.cancel()
    finally:
        served.close()


@pytest.mark.parametrize("peer, client", [("ipv4:127.0.0.1:5555", "ipv4:127.0.0.1"),
                                          ("ipv6:[::1]:5555", "ipv6:[::1]"), ("unix:", None)])
def test_clients_are_addresses_without_ports(peer, client):
    assert client_of(peer) == client


def test_refusals_and_streams_are_in_the_metrics(server):
    from prometheus_client import CollectorRegistry, generate_latest
    from controller.metrics import GrpcCollector
    state, running, channel, port = server
    registry = CollectorRegistry()
    registry.register(GrpcCollector(running))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as anonymous:
        with pytest.raises(grpc.RpcError):
            pb_grpc.StatusServiceStub(anonymous).GetStatus(pb.GetStatusRequest(), timeout=2)
    stream = pb_grpc.StatusServiceStub(channel).WatchEvents(pb.WatchEventsRequest())
    try:
        wait_for(lambda: running.limits.open_streams() == 1, 10, "the stream to open")
        text = generate_latest(registry).decode()
        assert 'cems_grpc_refused_total{code="UNAUTHENTICATED"} 1.0' in text
        assert "cems_grpc_streams_open 1.0" in text
    finally:
        stream.cancel()
