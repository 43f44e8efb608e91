"""The probe agent: runs the active tests the controller gives it (shell).

`cems-probe agent` holds ProbeService.WatchTasks open (reconnecting with backoff when the
controller goes away) and runs each STAMP test in a thread. A test runs in rounds of
report_interval_s; each round is one STAMP session from the same local port, and its
result becomes one record of kind "stamp" exported like the passive probe's records.
Optionally the agent also answers STAMP itself (--reflect PORT), so one agent per host
serves both ends of a test.
"""

import math
import socket
import threading
import time

import grpc
from cems.v1 import probe_pb2 as pb
from cems.v1 import probe_pb2_grpc as pb_grpc

from client.channel import Credentials

from probes.flows import FlowRecord
from probes.stamp import PACKET_SIZE, StampResult
from probes.stamp_io import run_sender

_UDP_IP = 28  # UDP and IPv4 headers around a STAMP packet


def _mean(values) -> float:
    return sum(values) / len(values) if values else math.nan


def stamp_record(result: StampResult, src: tuple[str, int], dst: tuple[str, int],
                 start_s: float, end_s: float) -> FlowRecord:
    """One STAMP session -> the record the controller stores (kind "stamp"). Packets and
    bytes count the answers that came back; forward and backward delays are one-way and
    mean something only when both ends share a clock."""
    kpis = {"stamp_sent": result.sent, "stamp_lost": result.lost,
            "stamp_loss_ratio": result.loss_ratio, "stamp_rtt_ms": result.rtt_mean_ms,
            "stamp_rtt_max_ms": max(result.rtt_ms, default=math.nan),
            "stamp_jitter_ms": result.jitter_ms, "stamp_duplicates": result.duplicates,
            "stamp_reordered": result.reordered,
            "stamp_forward_ms": _mean(result.forward_ms),
            "stamp_backward_ms": _mean(result.backward_ms)}
    size = result.received * (PACKET_SIZE + _UDP_IP)
    return FlowRecord(src[0], dst[0], 17, src[1], dst[1], "stamp", start_s, end_s,
                      result.received, size, size * 8 / max(end_s - start_s, 1e-9), 0, kpis)


def _local_end(host: str, port: int) -> tuple[str, int]:
    """The local address and a free port this host uses towards (host, port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))
        address = probe.getsockname()[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as free:
        free.bind((address, 0))
        return address, free.getsockname()[1]


def run_stamp_test(spec: pb.StampTestSpec, emit, stop: threading.Event) -> int:
    """Rounds of STAMP until the count is sent or stop is set; returns packets sent."""
    target = (spec.reflector_address, spec.reflector_port or 862)
    interval = spec.interval_s or 0.01
    per_round = max(1, round((spec.report_interval_s or 1.0) / interval))
    local = _local_end(*target)
    sent = 0
    while not stop.is_set() and (not spec.count or sent < spec.count):
        count = per_round if not spec.count else min(per_round, spec.count - sent)
        start = time.time()
        result = run_sender(*target, count=count, interval_s=interval,
                            timeout_s=min(1.0, max(0.2, 20 * interval)), bind=local[0],
                            bind_port=local[1], stop=stop)
        sent += result.sent
        if result.sent:
            emit([stamp_record(result, local, target, start, time.time())])
    return sent


class ProbeAgent:
    def __init__(self, address: str, probe_id: str, emit, max_backoff_s: float = 5.0,
                 credentials: Credentials = Credentials()):
        self.address = address
        self.credentials = credentials  # a probe token (or certificate) names the probe
        self.probe_id = probe_id
        self.emit = emit
        self.max_backoff_s = max_backoff_s
        self.tests: dict[str, threading.Event] = {}
        self.connected = threading.Event()
        self.errors: list[str] = []

    def _start(self, spec: pb.StampTestSpec) -> None:
        if spec.test_id in self.tests and not self.tests[spec.test_id].is_set():
            return  # sent again after a reconnect; it is running
        stop = self.tests[spec.test_id] = threading.Event()

        def run():
            try:
                run_stamp_test(spec, self.emit, stop)
            except OSError as err:  # unreachable network, bad address: say so, keep serving
                self.errors.append(f"test {spec.test_id}: {err}")
            finally:
                stop.set()
        threading.Thread(target=run, name=f"stamp-{spec.test_id}", daemon=True).start()

    def serve(self, stop: threading.Event) -> None:
        backoff = 0.5
        current: list = [None]  # the open stream, which stop() cancels

        def cancel_on_stop():
            stop.wait()
            if current[0] is not None:
                current[0].cancel()
        canceller = threading.Thread(target=cancel_on_stop, daemon=True)
        canceller.start()
        while not stop.is_set():
            channel = self.credentials.connect(self.address)
            stream = current[0] = pb_grpc.ProbeServiceStub(channel).WatchTasks(
                pb.WatchTasksRequest(probe_id=self.probe_id), wait_for_ready=True)
            if stop.is_set():  # set before the canceller could see this stream
                stream.cancel()
            try:
                stream.initial_metadata()  # sent by the controller as soon as it registered us
                self.connected.set()
                backoff = 0.5
                for task in stream:
                    if task.HasField("start_stamp"):
                        self._start(task.start_stamp)
                    elif task.stop_test_id in self.tests:
                        self.tests[task.stop_test_id].set()
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.CANCELLED:
                    self.errors = (self.errors + [f"controller: {err.code().name}"])[-20:]
            finally:
                self.connected.clear()
                channel.close()
            stop.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)
        canceller.join()
        for test in self.tests.values():
            test.set()
