"""Probe records through NATS JetStream (issue 15's "records/s through the stream with one
and with two consumers").

    .venv/bin/python bench/bench_stream.py [--customers 10000] [--records 200000]

A nats-server of its own (lab.servers.nats, a NATS user per role) and bench/world.py's
customers. The records are those of bench_experience.py (voice and IPTV, 4 to 1), one
batch of 500 per message as the probe sends them.
1. Publish: a probe's StreamExporter publishes every record; records/s until JetStream has
   acknowledged (stored) the last batch.
2. Consume, one consumer: a controller's RecordStream (signature check, protobuf, KPI
   store, assessor; what an instance does) in a process of its own reads the stream from
   its start; records/s from its first batch to its last, and of its CPU time.
3. Consume, two consumers, every record: two such processes at once, each with its own
   durable consumer and no partitions (records.partitions = 0), so each takes every record:
   the records/s of each, and their sum against the one consumer's. A second instance does
   the same work again: availability, not capacity.
4. Consume, two consumers, partitioned: the same two processes with 16 customer partitions,
   8 each (controller.cluster.partitions.RecordPicker, as an instance's `keep` does): each
   reads every batch and takes only its customers' records. The records/s of all records
   from the first batch to the last record either took, against the one consumer's: the
   capacity a second instance adds (2.0 would be perfect).
Baseline, measured in the same run: the same batches handed straight to the same take
(controller.api.probe.take_records) in a process, without NATS: what the stream costs; and
the same batches only parsed and their customers found (what every instance does with
every batch under partitions).
"""

import argparse
import functools
import multiprocessing
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cems.v1 import probe_pb2 as pb  # noqa: E402

from bench_experience import build_world, record_pbs  # noqa: E402
from client.stream import key_of  # noqa: E402
from controller.cluster.partitions import RecordPicker  # noqa: E402
from controller.validation import ip_address  # noqa: E402
from lab.servers import nats, nats_permissions  # noqa: E402

BATCH = 500
TOKEN = "cems_0bec0bec_" + "b" * 32


def batches(customers: int, records: int) -> list:
    pbs = record_pbs(customers, records, time.time() - records // customers - 2)
    return [pb.ExportRecordsRequest(records=pbs[i:i + BATCH])
            for i in range(0, len(pbs), BATCH)]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def baseline(customers: int, records: int, out) -> None:
    from controller.api.probe import take_records  # pylint: disable=import-outside-toplevel
    from controller.events import EventBus  # pylint: disable=import-outside-toplevel
    _csm, _state, kpis, experience = build_world(customers)
    requests = [pb.ExportRecordsRequest.FromString(b.SerializeToString())
                for b in batches(customers, records)]
    bodies = [r.SerializeToString() for r in requests]
    bus = EventBus()
    started, cpu = time.perf_counter(), cpu_s()
    taken = 0
    for body in bodies:   # the stream hands over bytes: decoding is part of the work
        taken += take_records(kpis, bus, experience.assessor.records, "bench-probe",
                              pb.ExportRecordsRequest.FromString(body))[0]
    result = {"taken": taken, "wall_s": time.perf_counter() - started, "cpu_s": cpu_s() - cpu}
    canonical = functools.partial(ip_address, "address")
    mapping = kpis.directory.current()[1]
    picker = RecordPicker(16, canonical)
    started = time.perf_counter()
    for body in bodies:   # what every instance does with every batch under partitions
        picker.pick(pb.ExportRecordsRequest.FromString(body).records, frozenset(), mapping)
    result["select_wall_s"] = time.perf_counter() - started
    out.put(result)


def consume(url: str, password: str, name: str, customers: int, records: int,
            taking: frozenset | None, out) -> None:
    from controller.api.probe import take_records  # pylint: disable=import-outside-toplevel
    from controller.events import EventBus  # pylint: disable=import-outside-toplevel
    from controller.stream import ProbeKey, RecordStream  # pylint: disable=import-outside-toplevel
    _csm, _state, kpis, experience = build_world(customers)
    bus = EventBus()
    first = []

    def take(probe_id, request, records=None):
        if not first:
            first.append((time.perf_counter(), cpu_s()))
        return take_records(kpis, bus, experience.assessor.records, probe_id, request,
                            records)
    keys = {"0bec0bec": ProbeKey("bench-probe", key_of(TOKEN), None)}
    keep = None
    if taking is not None:
        canonical = functools.partial(ip_address, "address")
        picker = RecordPicker(16, canonical)
        keep = lambda batch: picker.pick(   # noqa: E731
            batch, taking, kpis.directory.current()[1])
    stream = RecordStream(url, name, take, keys.get, "cems", password, batch=64,
                          start_back_s=3600.0, keep=keep)
    stream.start()
    if not records:   # only to make the stream
        while not stream.lag_checked_unix_s:
            time.sleep(0.05)
        stream.stop()
        out.put({"taken": 0})
        return
    deadline = time.monotonic() + 600
    while stream.records_taken + stream.records_refused + stream.records_elsewhere < \
            records and time.monotonic() < deadline:
        time.sleep(0.01)
    ended, cpu = time.perf_counter(), cpu_s()
    stream.stop()
    out.put({"taken": stream.records_taken, "wall_s": ended - first[0][0],
             "cpu_s": cpu - first[0][1], "rejected": stream.messages["rejected"],
             "started": first[0][0], "ended": ended})


def publish(url: str, password: str, customers: int, records: int) -> dict:
    from probes.stream import StreamExporter  # pylint: disable=import-outside-toplevel
    requests = batches(customers, records)
    exporter = StreamExporter(url, "bench-probe", TOKEN, "bench-probe", password,
                              max_buffer=records + BATCH, batch=BATCH, interval_s=0.01)
    # the records as the probe's buffer holds them (protobuf already): no FlowRecord
    # conversion in the figure
    with exporter._lock:   # pylint: disable=protected-access
        for request in requests:
            exporter._buffer.extend(request.records)   # pylint: disable=protected-access
    started = time.perf_counter()
    exporter.start()
    exporter.close(flush_timeout_s=600)
    wall = time.perf_counter() - started
    return {"sent": exporter.sent, "wall_s": wall}


def run_processes(targets) -> list[dict]:
    queue = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=t, args=(*a, queue)) for t, a in targets]
    for process in processes:
        process.start()
    results = [queue.get(timeout=900) for _ in processes]
    for process in processes:
        process.join(30)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    multiprocessing.set_start_method("fork")
    n = args.records
    base = run_processes([(baseline, (args.customers, n))])[0]
    users = nats_permissions(["bench-probe"])
    with nats(users) as (url, _work):
        # the stream exists before the probe publishes (a consumer makes it)
        made = run_processes([(consume, (url, users["cems"][0], "make", args.customers, 0,
                                          None))])
        assert made[0]["taken"] == 0
        sent = publish(url, users["bench-probe"][0], args.customers, n)
        assert sent["sent"] == n, sent
        one = run_processes([(consume, (url, users["cems"][0], "one", args.customers, n,
                                         None))])[0]
        two = run_processes([(consume, (url, users["cems"][0], f"two-{i}", args.customers,
                                        n, None)) for i in range(2)])
        halves = [frozenset(range(0, 8)), frozenset(range(8, 16))]
        split = run_processes([(consume, (url, users["cems"][0], f"part-{i}", args.customers,
                                          n, halves[i])) for i in range(2)])
    assert one["taken"] == n and all(r["taken"] == n for r in two), (one, two)
    assert sum(r["taken"] for r in split) == n, split
    rate = lambda r: r["taken"] / r["wall_s"]   # noqa: E731
    print(f"{n} records of {args.customers} customers, {BATCH} per message; "
          f"{os.cpu_count()} CPUs")
    print(f"  baseline, take without NATS     {rate(base):10,.0f} records/s "
          f"({base['taken'] / base['cpu_s']:,.0f} per CPU second)")
    print(f"  publish (stored, acknowledged)  {n / sent['wall_s']:10,.0f} records/s")
    print(f"  one consumer                    {rate(one):10,.0f} records/s "
          f"({one['taken'] / one['cpu_s']:,.0f} per CPU second); "
          f"{rate(one) / rate(base):.2f} x the baseline")
    each = [rate(r) for r in two]
    print(f"  two consumers, each all records {each[0]:10,.0f} and {each[1]:,.0f} records/s; "
          f"each {min(each) / rate(one):.2f} x the one consumer, together "
          f"{sum(each) / rate(one):.2f} x the work")
    # multiprocessing's fork: both processes read the same clock
    wall = max(r["ended"] for r in split) - min(r["started"] for r in split)
    print(f"  two consumers, 8 of 16 partitions each: {split[0]['taken']:,} and "
          f"{split[1]['taken']:,} records; all {n / wall:10,.0f} records/s, "
          f"{n / wall / rate(one):.2f} x the one consumer (2.00: perfect)")
    print(f"  parse a batch and find its customers (every instance, every batch) "
          f"{base['taken'] / base['select_wall_s']:,.0f} records/s, "
          f"{base['taken'] / base['select_wall_s'] / rate(base):.0f} x the take")
    return 0


if __name__ == "__main__":
    sys.exit(main())
