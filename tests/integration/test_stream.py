"""Probe records through NATS JetStream into a real controller process (started by the test,
with a nats-server of its own on 127.0.0.1 and a NATS user per probe):

- a probe publishes batches of records, signed with its cems token; the controller takes
  them (ListKpis), shows its consumer and lag in `cemsctl status` and Prometheus, and
  counts a forged batch without taking it;
- the controller is killed with SIGKILL mid-stream while the probe goes on publishing; the
  restarted controller (same durable consumer) takes every batch the killed one had not
  acknowledged: none is lost;
- while NATS is down the controller is NOT SERVING and says why; when NATS is back it
  serves again.
"""

import asyncio
import os
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
from cems.v1 import probe_pb2 as pb
from cems.v1 import probe_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.stream import STREAM, subject_for
from controller.stream import default_consumer
from lab.emulation import REPO, wait_for
from lab.servers import nats, nats_permissions
from probes.flows import FlowRecord
from probes.stream import StreamExporter


def config(url: str, password_file: str) -> str:
    return (f'[records]\nnats = "{url}"\nnats_user = "cems"\n'
            f'nats_password_file = "{password_file}"\n[kpi]\nmax_age_s = 600\n')


def record(sport: int) -> FlowRecord:
    now = time.time()
    return FlowRecord("10.0.0.1", "10.0.0.2", 17, sport, 5004, "rtp", now - 1, now, 50, 10_000,
                      80_000.0, 46, {"rtp_loss_ratio": 0.0})


def taken_sports(controller) -> set[int]:
    with controller.channel() as channel:
        reply = pb_grpc.ProbeServiceStub(channel).ListKpis(pb.ListKpisRequest(limit=10_000),
                                                           timeout=10)
    return {r.sport for r in reply.records}


async def _read_stream(url: str, user: str, password: str, consumer: str):
    """Every batch the stream holds, by sequence (its records' sports), and the ack floor of
    `consumer`."""
    import nats as client_library  # pylint: disable=import-outside-toplevel
    client = await client_library.connect(url, user=user, password=password)
    js = client.jetstream()
    info = await js.stream_info(STREAM)
    batches = {}
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        message = await js.get_msg(STREAM, sequence)
        batches[sequence] = {r.sport for r in
                             pb.ExportRecordsRequest.FromString(message.data).records}
    floor = (await js.consumer_info(STREAM, consumer)).ack_floor.stream_seq
    await client.close()
    return batches, floor


def read_stream(url, users, consumer):
    return asyncio.run(_read_stream(url, "cems", users["cems"][0], consumer))


def metrics(controller) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{controller.metrics_port}/metrics",
                                timeout=5) as reply:
        return reply.read().decode()


def serving(controller) -> bool:
    with grpc.insecure_channel(controller.grpc_address) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2).status == \
                health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False


def test_records_on_the_stream_survive_a_controller_killed_mid_stream(make_controller, tmp_path):
    users = nats_permissions(["edge1"])
    password_file = tmp_path / "nats-password"
    password_file.write_text(users["cems"][0] + "\n")
    password_file.chmod(0o600)
    with nats(users) as (url, _work):
        controller = make_controller(extra_config=config(url, str(password_file)))
        token = controller.probe_token("edge1")
        consumer = default_consumer(controller.grpc_port)
        exporter = StreamExporter(url, "edge1", token, "edge1", users["edge1"][0], batch=20,
                                  interval_s=0.05)
        exporter.start()
        published, stop = [], threading.Event()

        def publish():   # 20 records every 50 ms, each its own flow
            sport = 1000
            while not stop.is_set() and sport < 5000:
                exporter.offer([record(s) for s in range(sport, sport + 20)])
                published.extend(range(sport, sport + 20))
                sport += 20
                stop.wait(0.05)
        publisher = threading.Thread(target=publish)
        publisher.start()
        try:
            wait_for(lambda: len(taken_sports(controller)) >= 400, 30,
                     "the controller to take the first records")
            status = subprocess.run(
                [sys.executable, "-m", "controller.cli", "--server",
                 controller.grpc_address, "status"], cwd=REPO, capture_output=True, text=True,
                timeout=30, env={**os.environ, "CEMS_TOKEN": controller.token}, check=True)
            line = next(l for l in status.stdout.splitlines() if l.startswith("records stream"))
            assert f"{url} consumer {consumer}: " in line and "behind" in line, line
            scraped = metrics(controller)
            assert "cems_stream_connected 1.0" in scraped
            assert 'cems_stream_messages_total{outcome="taken"}' in scraped

            controller.stop(kill=True)           # mid-stream: the probe goes on publishing
            time.sleep(1.0)
            batches, floor = read_stream(url, users, consumer)
            assert 0 < floor < max(batches)      # some acknowledged, some not yet
            controller.start()
            stop.set()
            publisher.join()
            exporter.close()
            assert exporter.sent == len(published) and exporter.dropped == 0

            batches, _ = read_stream(url, users, consumer)
            assert set().union(*batches.values()) == set(published)   # all stored, once
            after_kill = set().union(*(s for seq, s in batches.items() if seq > floor))
            wait_for(lambda: after_kill <= taken_sports(controller), 30,
                     "every batch the killed controller had not acknowledged")
            status = controller.status()
            assert status.serving and status.stream.consumer == consumer
            wait_for(lambda: controller.status().stream.pending == 0, 10, "no lag")
        finally:
            stop.set()
            publisher.join()
            exporter.close(flush_timeout_s=0.5)

        # a NATS user that may publish but holds no probe token cannot make records
        async def forge():
            import nats as client_library  # pylint: disable=import-outside-toplevel
            client = await client_library.connect(url, user="cems", password=users["cems"][0])
            await client.jetstream().publish(subject_for("edge1"), pb.ExportRecordsRequest(
                records=[pb.FlowRecord(src="10.9.9.9", dst="10.0.0.2", sport=9)]
            ).SerializeToString(), headers={"Cems-Token-Id": token.split("_")[1],
                                            "Cems-Signature": "0" * 64})
            await client.close()
        asyncio.run(forge())
        wait_for(lambda: 'cems_stream_rejected_messages_total{reason="bad signature"} 1.0'
                 in metrics(controller), 10, "the forged batch counted")
        assert 9 not in taken_sports(controller)

    # NATS is gone: the controller cannot read the probes, and says so
    wait_for(lambda: not serving(controller), 15, "NOT SERVING without NATS")
    problems = " ".join(controller.status().problems)
    assert "records stream" in problems and "probe records are not read" in problems
    port = int(url.rsplit(":", 1)[1])
    with nats(users, port=port):
        wait_for(lambda: serving(controller), 30, "SERVING again with NATS back")
        assert controller.status().stream.reading
