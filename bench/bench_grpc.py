"""gRPC latency under load: GetStatus, an SLS change and ListKpis of one customer.

    .venv/bin/python bench/bench_grpc.py [--customers 10000] [--seconds 5]

A controller's gRPC server (the real servicers, store, interceptors and limits, no
switches) runs in a process of its own with 10,000 customers, each with one device whose
address the controller knows and two flows of probe records. Eight client threads call one
method as fast as they can for a few seconds, first alone, then while 50 WatchEvents
streams are held open; the figures are the median and 99th percentile latency of each,
and the ratio with streams to without (the baseline, measured in the same run). Aim:
ListKpis of one customer under 10 ms median.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402
from cems.v1 import customer_pb2, customer_pb2_grpc, probe_pb2, probe_pb2_grpc  # noqa: E402
from cems.v1 import status_pb2, status_pb2_grpc  # noqa: E402

from client.channel import connect  # noqa: E402
from world import serve_until_terminated, M, customer_world, ip  # noqa: E402

CLIENTS = 8
HELD = 50


def serve(customers: int, info_path: str) -> None:
    """The server side: build the world, serve, write port and tokens, wait for SIGTERM."""
    from controller.api.server import serve_grpc
    from controller.config import Address
    from controller.csm.model import Role
    from controller.monitor.kpis import KpiRecord, KpiStore

    csm, state = customer_world(customers)
    kpis = KpiStore()
    server, port = serve_grpc(state, Address("127.0.0.1", 0), csm=csm, kpis=kpis,
                              max_workers=96, max_streams=64, max_streams_per_client=64)
    now = time.time()
    kpis.add_records([KpiRecord("core", ip(n), "10.200.0.1", 17, 4000 + k, 5004, "rtp",
                                now - 1, now, 50, 10_000, 80_000.0, 46,
                                {"rtp_loss_ratio": 0.0, "rtp_jitter_ms": 0.5})
                      for n in range(customers) for k in range(2)])
    tokens = {"manager": csm.create_token(Role.DOMAIN_MANAGER)[1],
              "customers": [csm.create_token(Role.CUSTOMER, f"c{n:05d}")[1]
                            for n in range(CLIENTS)]}
    serve_until_terminated(server, info_path, {"port": port, "tokens": tokens})


def load(address: str, call_for, seconds: float) -> list[float]:
    """CLIENTS threads, each with its own channel, calling for `seconds`; latencies in ms."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def client(n: int) -> None:
        channel, call = call_for(n)
        mine = []
        with channel:
            call()  # warm the connection
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    call()
                except grpc.RpcError as err:
                    errors.append(f"{err.code().name}: {err.details()}")
                    return
                mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]}")
    return latencies


def figures(latencies: list[float]) -> tuple[float, float, int]:
    latencies = sorted(latencies)
    return (statistics.median(latencies), latencies[int(len(latencies) * 0.99)],
            len(latencies))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--serve", metavar="INFO", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.customers, args.serve)
        return 0
    info = os.path.join(tempfile.mkdtemp(prefix="cems-bench-"), "server.json")
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--customers",
                               str(args.customers), "--serve", info])
    try:
        started = time.monotonic()
        while not os.path.exists(info):
            if server.poll() is not None or time.monotonic() - started > 300:
                raise RuntimeError("the benchmark server did not start")
            time.sleep(0.2)
        with open(info, encoding="utf-8") as stream:
            world = json.load(stream)
        address = f"127.0.0.1:{world['port']}"
        manager, customers = world["tokens"]["manager"], world["tokens"]["customers"]
        print(f"{args.customers:,} customers, {2 * args.customers:,} flows of probe records; "
              f"{CLIENTS} clients, {args.seconds:g} s per figure", flush=True)

        def status(n):
            channel = connect(address, manager)
            stub = status_pb2_grpc.StatusServiceStub(channel)
            return channel, lambda: stub.GetStatus(status_pb2.GetStatusRequest(), timeout=10)

        def sls_change(n):
            channel = connect(address, customers[n])
            stub = customer_pb2_grpc.SlsServiceStub(channel)
            rates = iter(range(1_000_000, 10 ** 12, 1000))
            return channel, lambda: stub.ChangeSls(customer_pb2.ChangeSlsRequest(
                service_class=customer_pb2.SERVICE_CLASS_GOLD, rate_bps=next(rates) % (19 * M)
                + M), timeout=10)

        def kpis_of_one(n):
            channel = connect(address, manager)
            stub = probe_pb2_grpc.ProbeServiceStub(channel)
            customer = f"c{(n * 997) % args.customers:05d}"
            return channel, lambda: stub.ListKpis(probe_pb2.ListKpisRequest(
                customer_id=customer), timeout=10)

        methods = {"GetStatus": status, "ChangeSls": sls_change, "ListKpis (one customer)":
                   kpis_of_one}
        results = {}
        for held in (0, HELD):
            channel = connect(address, manager)
            stub = status_pb2_grpc.StatusServiceStub(channel)
            streams = [stub.WatchEvents(status_pb2.WatchEventsRequest()) for _ in range(held)]
            time.sleep(1.0 if held else 0)
            refused = sum(s.done() for s in streams)
            for name, call_for in methods.items():
                results[(name, held)] = figures(load(address, call_for, args.seconds))
            for stream in streams:
                stream.cancel()
            channel.close()
            if refused:
                print(f"  ({refused} of the {held} held streams were refused)")
        print(f"{'method':<26}{'streams held':>13}{'median ms':>11}{'p99 ms':>9}{'calls':>9}"
              f"{'median ratio':>14}")
        for name in methods:
            base = results[(name, 0)][0]
            for held in (0, HELD):
                median, p99, calls = results[(name, held)]
                print(f"{name:<26}{held:>13}{median:>11.2f}{p99:>9.2f}{calls:>9,}"
                      f"{median / base:>14.2f}")
        aim = results[("ListKpis (one customer)", 0)][0]
        print(f"aim: ListKpis of one customer under 10 ms median: {aim:.2f} ms "
              f"({'met' if aim < 10 else 'NOT met'})")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
