"""Benchmark of customer service management.

1. Load N customers (default 1,000,000) with GSB SLAs and first SLSs into a fresh SQLite
   store with CsmStore.import_customers(): time (generating the rows included), rate and
   memory (growth of the peak RSS, and the database file). Baseline in the same run: the same rows through create_customer() one
   transaction each, on a sample, extrapolated per customer.
2. SLS change to meter on the switch: a running cems controller, one Open vSwitch bridge
   (userspace datapath) with M customers (default 1,000) on it; a customer changes its SLS
   over gRPC and the clock stops when `ovs-ofctl dump-meters` shows the new rate. Median
   and 99th percentile over many changes, next to the median of the dump-meters call alone
   (the polling cost included in each figure). Needs root and Open vSwitch (make bench).

Run: make bench   (or .venv/bin/python bench/bench_csm.py [--customers N] [--changes K])
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import resource
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cems.v1 import customer_pb2 as pb  # noqa: E402
from cems.v1 import customer_pb2_grpc as pb_grpc  # noqa: E402

from controller.csm.mapping import customer_meter_id  # noqa: E402
from controller.csm.model import ClassBounds, Customer, Role, ServiceClass, Sla  # noqa: E402
from controller.csm.rules import initial_sls  # noqa: E402
from controller.csm.store import CsmStore  # noqa: E402
from lab.emulation import ControllerProcess, wait_for  # noqa: E402
from controller.store import Store  # noqa: E402

M = 1_000_000
BOUNDS = {ServiceClass.GOLD: ClassBounds(2 * M, 8 * M), ServiceClass.SILVER: ClassBounds(2 * M, 10 * M),
          ServiceClass.BRONZE: ClassBounds(M, 20 * M)}


def rows(count: int, dpid_of=lambda i: 1 + i // 48, interval_s: float = 60.0, start: int = 0):
    now = time.time()
    for i in range(start, start + count):
        cid = f"c{i:07d}"
        customer = Customer(cid, f"Customer {i}", "residential", False, dpid_of(i), 1 + i % 48,
                            (f"02:00:{(i >> 24) & 255:02x}:{(i >> 16) & 255:02x}:"
                             f"{(i >> 8) & 255:02x}:{i & 255:02x}",))
        sla = Sla(cid, "gsb-business", BOUNDS, 0.999, interval_s)
        yield customer, sla, initial_sls(sla, now)


def bench_import(count: int, sample: int) -> None:
    workdir = tempfile.mkdtemp(prefix="cems-bench-")
    path = os.path.join(workdir, "cems.sqlite")
    csm = CsmStore(Store(path))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    stored = csm.import_customers(rows(count))
    elapsed = time.perf_counter() - start
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024
    csm.store.close()
    size = sum(os.path.getsize(os.path.join(workdir, f)) for f in os.listdir(workdir))

    single = CsmStore(Store(os.path.join(workdir, "single.sqlite")))
    start = time.perf_counter()
    for customer, sla, sls in rows(sample):
        single.create_customer(customer, sla, sls, lambda committed: None)
    per_customer_single = (time.perf_counter() - start) / sample
    single.store.close()
    print(f"customer store: {stored:,} customers with SLAs imported in {elapsed:.1f} s "
          f"({stored / elapsed:,.0f}/s), peak RSS growth {peak / 1e6:.0f} MB, "
          f"database {size / 1e6:.0f} MB ({size / stored:.0f} bytes per customer)")
    print(f"  baseline create_customer() one transaction each: {1 / per_customer_single:,.0f}/s "
          f"(on {sample:,}), {per_customer_single * stored:.0f} s for {stored:,}; "
          f"import is {per_customer_single * stored / elapsed:.0f}x faster")


def ofctl(*args: str) -> str:
    return subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *args], check=True,
                          capture_output=True, text=True, timeout=10).stdout


def bench_change(customers: int, changes: int) -> None:
    bridge, dpid = "csmbench", 0xBE
    workdir = tempfile.mkdtemp(prefix="cems-bench-")
    controller = ControllerProcess(workdir=workdir)
    csm = CsmStore(Store(controller.store_path))
    csm.import_customers(rows(customers, dpid_of=lambda i: dpid, interval_s=0.0))
    _, token = csm.create_token(Role.CUSTOMER, "c0000000")
    csm.store.close()
    try:
        controller.start()
        subprocess.run(["ovs-vsctl", "--may-exist", "add-br", bridge, "--", "set", "bridge", bridge,
                        "datapath_type=netdev", "protocols=OpenFlow13", "fail_mode=secure",
                        f"other-config:datapath-id={dpid:016x}", "--", "set-controller", bridge,
                        f"tcp:127.0.0.1:{controller.openflow_port}"], check=True, timeout=20)
        wait_for(lambda: ofctl("dump-meters", bridge).count("meter=") >= customers, 120,
                 f"{customers} customer meters on the bridge")
        channel = grpc.insecure_channel(controller.grpc_address)
        stub = pb_grpc.SlsServiceStub(channel)
        meta = (("authorization", f"Bearer {token}"),)
        target = f"meter={customer_meter_id(1)}"
        probe = []
        for _ in range(20):
            start = time.perf_counter()
            ofctl("dump-meters", bridge, target)
            probe.append(time.perf_counter() - start)
        latencies = []
        for n in range(changes):
            rate = (3 + n % 5) * M
            start = time.perf_counter()
            stub.ChangeSls(pb.ChangeSlsRequest(customer_id="c0000000",
                                               service_class=pb.SERVICE_CLASS_GOLD, rate_bps=rate),
                           metadata=meta, timeout=10)
            want = f"rate={rate // 1000} "
            while want not in ofctl("dump-meters", bridge, target) + " ":
                if time.perf_counter() - start > 10:
                    raise TimeoutError(f"meter never showed {want}")
            latencies.append(time.perf_counter() - start)
        channel.close()
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"SLS change to meter on the switch ({customers:,} customers on it, {changes} "
              f"changes): median {statistics.median(latencies) * 1000:.1f} ms, 99th percentile "
              f"{p99 * 1000:.1f} ms; one dump-meters poll alone: median "
              f"{statistics.median(probe) * 1000:.1f} ms (included in each figure)")
    finally:
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", bridge], timeout=20)
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--switch-customers", type=int, default=1_000)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    bench_import(args.customers, args.sample)
    if os.geteuid() == 0:
        bench_change(args.switch_customers, args.changes)
    else:
        print("SLS change benchmark skipped: it needs root and Open vSwitch")


if __name__ == "__main__":
    main()
