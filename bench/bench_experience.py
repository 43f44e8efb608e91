"""Experience benchmark: probe records into quality per customer and service, and one window of
quality for 100,000 customers x 5 services.

    .venv/bin/python bench/bench_experience.py [--customers 10000] [--records 100000]

1. End to end over gRPC: a controller's gRPC server (the real servicers, KPI store, customer
   directory and experience engine; no switches) runs in a process of its own with
   `--customers` customers; one probe streams `--records` voice and IPTV records (4 to 1)
   in batches of 1,000 with ExportRecords, which returns once every record is stored, joined
   with its customer and service and turned into a quality sample. Figures: records per
   second of wall time and per second of the server process's CPU time (one core: the
   server's Python work holds one interpreter lock), checked against what the server's
   experience book then holds. Aim: 100,000 records/s.
   In this process, the same records through each stage alone: protobuf to KpiRecord, the
   KPI store, the assessor (voice scores on whole arrays), and the baseline: the plain
   per-record loop (quality_of and ExperienceBook.add for each record).
2. One 1 s window for 100,000 customers x 5 services (500,000 pairs, one sample each):
   the E-model on arrays for the window's voice samples, qoe.aggregate per customer,
   service and window over all samples, and the statuses (ExperienceBook.evaluate over every
   pair); baseline: a per-record loop (scalar E-model and a running mean and worst per pair)
   on a slice. Aim: under 200 ms.
"""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from cems.v1 import probe_pb2, probe_pb2_grpc, qoe_pb2, qoe_pb2_grpc  # noqa: E402

from client.channel import connect  # noqa: E402
from timing import best_of  # noqa: E402
from world import serve_until_terminated, customer_world, ip  # noqa: E402

BATCH = 1_000


def record_pbs(customers: int, count: int, start: float) -> list:
    """`count` FlowRecords, one per customer and second: of its voice flow four seconds in
    five, of its IPTV flow the fifth."""
    rng = np.random.default_rng(3)
    out = []
    for i in range(count):
        n = i % customers
        t = start + i // customers
        if (i // customers) % 5 != 4:
            loss = float(rng.choice([0.0, 0.0, 0.0, rng.uniform(0, 0.1)]))
            out.append(probe_pb2.FlowRecord(
                src="10.200.0.1", dst=ip(n), proto=17, sport=4000, dport=5004, kind="rtp",
                interval_start_unix_s=t, interval_end_unix_s=t + 1, packets=50, bytes=10_000,
                throughput_bps=80_000.0, dscp=46, kpis={
                    "rtp_loss_ratio": loss, "rtp_lost": loss * 50, "rtp_expected": 50.0,
                    "rtp_jitter_ms": 1.0, "rtp_jitter_max_ms": float(rng.uniform(0.5, 20)),
                    "rtp_payload_type": 0.0, "rtp_mean_burst_packets": 1.0 if loss else 0.0}))
        else:
            lost = float(rng.choice([0.0, 0.0, rng.integers(1, 30)]))
            out.append(probe_pb2.FlowRecord(
                src="10.201.0.1", dst=ip(n), proto=17, sport=4001, dport=1234,
                kind="mpegts", interval_start_unix_s=t, interval_end_unix_s=t + 1,
                packets=380, bytes=500_000, throughput_bps=4e6, dscp=34, kpis={
                    "ts_packets": 2660.0, "ts_lost_packets": lost, "ts_cc_errors": lost,
                    "mdi_df_ms": 5.0}))
    return out


def build_world(customers: int):
    """The server side's objects: bench/world.py's customers and topology, a KPI store and
    the experience (what controller.runtime builds)."""
    from controller.config import ControllerConfig
    from controller.monitor.kpis import KpiStore
    from controller.runtime import build_experience

    csm, state = customer_world(customers)
    kpis = KpiStore()
    config = ControllerConfig(qoe_iptv_frame_rate=25.0)
    experience = build_experience(config, kpis)
    kpis.directory.use_topology(lambda: state.topology)
    kpis.directory.load(csm.all_current_sls())
    return csm, state, kpis, experience


def serve(customers: int, info_path: str) -> None:
    from controller.api.server import serve_grpc
    from controller.config import Address
    from controller.csm.model import Role
    csm, state, kpis, experience = build_world(customers)
    server, port = serve_grpc(state, Address("127.0.0.1", 0), csm=csm, kpis=kpis,
                              experience=experience)
    tokens = {"manager": csm.create_token(Role.DOMAIN_MANAGER)[1],
              "probe": csm.create_token(Role.PROBE, probe_id="bench-probe")[1]}
    serve_until_terminated(server, info_path, {"port": port, "tokens": tokens})


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stream:
        fields = stream.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def end_to_end(customers: int, records: int) -> dict:
    info = os.path.join(tempfile.mkdtemp(prefix="cems-bench-"), "info.json")
    server = subprocess.Popen([sys.executable, __file__, "--serve", info, "--customers",
                               str(customers)])
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(info):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the benchmark server did not start")
            time.sleep(0.2)
        with open(info, encoding="utf-8") as stream:
            world = json.load(stream)
        address = f"127.0.0.1:{world['port']}"
        batches = [probe_pb2.ExportRecordsRequest(probe_id="bench-probe",
                                                  records=chunk)
                   for chunk in (lambda rs: [rs[i:i + BATCH] for i in range(0, len(rs), BATCH)])(
                       record_pbs(customers, records, time.time() - records // customers - 2))]
        with connect(address, world["tokens"]["probe"]) as channel:
            stub = probe_pb2_grpc.ProbeServiceStub(channel)
            stub.ExportRecords(iter(batches[:1]))  # warm up: connection, first joins
            cpu_before = cpu_seconds(server.pid)
            started = time.perf_counter()
            reply = stub.ExportRecords(iter(batches[1:]))
            wall = time.perf_counter() - started
            cpu = cpu_seconds(server.pid) - cpu_before
        with connect(address, world["tokens"]["manager"]) as channel:
            listed = qoe_pb2_grpc.QoeServiceStub(channel).ListExperience(
                qoe_pb2.ListExperienceRequest(limit=1000), timeout=60)
        sent = sum(len(b.records) for b in batches[1:])
        return {"sent": sent, "accepted": reply.accepted, "rejected": reply.rejected,
                "wall_s": wall, "cpu_s": cpu, "pairs": listed.total}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def stages(customers: int, records: int) -> dict:
    """The same records through each stage in this process; the per-record loop baseline."""
    from controller.api import convert
    from controller.monitor.experience import ExperienceBook
    from controller.monitor.quality import quality_of
    _csm, _state, kpis, experience = build_world(customers)
    pbs = record_pbs(customers, records, time.time() - records // customers - 2)
    out = {}
    started = time.perf_counter()
    converted = [convert.record_from_pb("bench-probe", m) for m in pbs]
    out["convert"] = time.perf_counter() - started
    started = time.perf_counter()
    stored = []
    for i in range(0, len(converted), BATCH):
        stored.extend(kpis.add_records(converted[i:i + BATCH])[0])
    out["kpi_store"] = time.perf_counter() - started
    out["stored"] = len(stored)
    started = time.perf_counter()
    for i in range(0, len(stored), BATCH):
        experience.assessor.records(stored[i:i + BATCH])
    out["assessor"] = time.perf_counter() - started
    loop_n = min(len(stored), 5_000)
    book = ExperienceBook()
    settings = experience.assessor.settings
    started = time.perf_counter()
    for record in stored[:loop_n]:
        quality = quality_of(record, None, settings)
        book.add(record.customer_id, record.service, quality, 0.0, 1.0, "silver",
                 "residential")
    out["loop_per_record_s"] = (time.perf_counter() - started) / loop_n
    return out


def one_window(customers: int) -> dict:
    """The work of one 1 s window for `customers` x 5 services."""
    from qoe import emodel
    from qoe.aggregate import aggregate_windows
    from controller.monitor.experience import ExperienceBook
    rng = np.random.default_rng(5)
    pairs = customers * 5
    customer = np.repeat(np.arange(customers), 5)
    service = np.tile(np.arange(5), customers)
    voice = service == 0
    nv = int(voice.sum())
    ppl = np.where(rng.random(nv) < 0.8, 0.0, rng.uniform(0, 10, nv))
    ta = rng.uniform(20, 200, nv)
    scores = rng.uniform(1, 5, pairs)
    out = {"pairs": pairs}

    def vector():
        mos = emodel.mos_from_r(emodel.r_factor_array(
            ppl=ppl, burstr=np.ones(nv), ie=np.zeros(nv), bpl=np.full(nv, 4.3),
            **emodel.voice_delays(ta)))
        scores[voice] = mos
        return aggregate_windows(customer, service, np.zeros(pairs), scores, np.ones(pairs),
                                 1.0, 3.0)
    out["vector_s"] = best_of(vector)
    book = ExperienceBook()
    book.add_samples(0.0, [(f"c{c}", s, float(v), 1.0, "silver", "residential", None)
                           for c, s, v in zip(customer.tolist(), np.array(
                               ["voice", "iptv", "video", "web", "bulk"])[service].tolist(),
                                                scores.tolist())])
    started = time.perf_counter()
    book.evaluate(1.0)
    out["evaluate_s"] = time.perf_counter() - started
    loop_n = min(20_000, pairs)
    started = time.perf_counter()
    running: dict = {}
    for i in range(loop_n):
        if voice[i]:
            j = i // 5   # the voice samples are every fifth pair
            score = emodel.mos_from_r(emodel.r_factor(
                ppl=float(ppl[j]), burstr=1.0, ie=0.0, bpl=4.3, ta=float(ta[j]),
                t=float(ta[j]), tr=2 * float(ta[j])))
        else:
            score = float(scores[i])
        total, count, worst = running.get((customer[i], service[i]), (0.0, 0, math.inf))
        running[(customer[i], service[i])] = (total + score, count + 1, min(worst, score))
    out["loop_per_pair_s"] = (time.perf_counter() - started) / loop_n
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--window-customers", type=int, default=100_000)
    parser.add_argument("--serve", metavar="INFO", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.customers, args.serve)
        return 0
    print(f"1. {args.records:,} probe records of {args.customers:,} customers over gRPC")
    e2e = end_to_end(args.customers, args.records)
    print(f"   accepted {e2e['accepted']:,} of {e2e['sent']:,} (rejected {e2e['rejected']}), "
          f"{e2e['pairs']:,} customer-service pairs in the experience book")
    print(f"   {e2e['sent'] / e2e['wall_s']:,.0f} records/s of wall time, "
          f"{e2e['sent'] / max(e2e['cpu_s'], 1e-9):,.0f} records/s of the server's CPU time "
          f"(aim 100,000)")
    s = stages(args.customers, args.records)
    n = s["stored"]
    loop_rate = 1 / s["loop_per_record_s"]
    assessor_rate = n / s["assessor"]
    print(f"   in one process, per stage: protobuf to record {n / s['convert']:,.0f}/s, "
          f"KPI store {n / s['kpi_store']:,.0f}/s, assessor {assessor_rate:,.0f}/s")
    print(f"   baseline, per-record loop (quality_of + ExperienceBook.add): "
          f"{loop_rate:,.0f}/s; the assessor is {assessor_rate / loop_rate:,.0f} x that")
    w = one_window(args.window_customers)
    print(f"2. one 1 s window, {args.window_customers:,} customers x 5 services "
          f"({w['pairs']:,} pairs)")
    print(f"   E-model on arrays + qoe.aggregate: {w['vector_s'] * 1000:.0f} ms; statuses "
          f"(ExperienceBook.evaluate): {w['evaluate_s'] * 1000:.0f} ms; together "
          f"{(w['vector_s'] + w['evaluate_s']) * 1000:.0f} ms (aim 200 ms)")
    loop_total = w["loop_per_pair_s"] * w["pairs"]
    print(f"   baseline, per-record loop: {loop_total * 1000:,.0f} ms for the window "
          f"(measured on {min(20_000, w['pairs']):,} pairs); arrays + aggregate are "
          f"{loop_total / w['vector_s']:,.0f} x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
