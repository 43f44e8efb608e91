"""Benchmark of the store on its two engines (issue 15's "SLS change latency through
PostgreSQL against SQLite in the same run").

1. SLS change latency: CustomerService.change_sls (the rules, one transaction, the audit
   row) for C customers (default 200) changing in turn, on a SQLite file and on a PostgreSQL
   server started by the benchmark (lab.servers.postgres: Debian's postgresql, local
   socket-less TCP on 127.0.0.1, fsync off as in the tests). Median and 99th percentile of
   each, and PostgreSQL's median against SQLite's.
2. Between instances: an SLS change committed through instance A until instance B's
   listener has it (NOTIFY, then B re-reads the customer): median and 99th percentile.

Run: .venv/bin/python bench/bench_store.py [--customers C] [--changes K]
"""

import argparse
import os
import queue
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from controller.csm.model import ClassBounds, Customer, Principal, Role, ServiceClass, Sla, \
    Sls  # noqa: E402
from controller.csm.rules import initial_sls  # noqa: E402
from controller.csm.service import CustomerService, Gate  # noqa: E402
from controller.csm.store import CsmStore  # noqa: E402
from controller.network.topology import PortInfo, Topology  # noqa: E402
from controller.store import Store  # noqa: E402
from lab.servers import postgres  # noqa: E402

M = 1_000_000
BOUNDS = {ServiceClass.GOLD: ClassBounds(2 * M, 8 * M),
          ServiceClass.SILVER: ClassBounds(2 * M, 10 * M)}


def quantile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fill(csm: CsmStore, customers: int) -> None:
    rows = []
    for i in range(customers):
        customer_id = f"c{i}"
        sla = Sla(customer_id, "gsb-business", BOUNDS, min_change_interval_s=0.0)
        rows.append((Customer(customer_id, customer_id, "soho", False, 5, 3 + i % 40),
                     sla, initial_sls(sla, 0.0)))
    csm.import_customers(rows)


def sls_changes(where: str, customers: int, changes: int) -> list[float]:
    csm = CsmStore(Store(where))
    fill(csm, customers)
    topology = Topology()
    topology.add_switch(5, 0.0)
    topology.set_ports(5, [PortInfo(p, f"s5-eth{p}", f"0a:00:00:00:05:{p:02x}")
                           for p in range(1, 50)])
    snapshot = topology.snapshot()
    service = CustomerService(csm, lambda: snapshot,
                              capacities={(5, p): 1000 * M for p in range(1, 50)})
    gate = Gate(csm)
    out = []
    for n in range(changes):
        customer_id = f"c{n % customers}"
        who = Principal(Role.CUSTOMER, customer_id, "t")
        rate = (2 + n % 6) * M
        started = time.perf_counter()   # what ChangeSls runs: authorization, audit, change
        gate.run(who, "change_sls", customer_id,
                 lambda c, rate=rate: service.change_sls(c, ServiceClass.GOLD, rate), own=True)
        out.append(time.perf_counter() - started)
    csm.store.close()
    return out


def between_instances(where: str, changes: int) -> list[float]:
    a, b = CsmStore(Store(where)), CsmStore(Store(where))
    heard: queue.Queue = queue.Queue()
    b.watch_other_instances(lambda customer_id, state: heard.put((time.perf_counter(), state)))
    time.sleep(1.0)   # B listening
    out = []
    for n in range(changes):
        rate = (2 + n % 6) * M
        started = time.perf_counter()
        a.change_sls("c0", lambda sla, last, rate=rate: Sls("c0", ServiceClass.GOLD, rate,
                                                            time.time()))
        at, state = heard.get(timeout=10)
        assert state.sls.rate_bps == rate
        out.append(at - started)
    a.store.close()
    b.store.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--changes", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, postgres() as server:
        sqlite = sls_changes(os.path.join(work, "cems.sqlite"), args.customers, args.changes)
        pg = sls_changes(server, args.customers, args.changes)
        hops = between_instances(server, min(args.changes, 200))
    print(f"SLS change through the store ({args.changes} changes, {args.customers} customers):")
    for name, values in (("SQLite", sqlite), ("PostgreSQL", pg)):
        print(f"  {name:<10} median {statistics.median(values) * 1e3:7.2f} ms, "
              f"p99 {quantile(values, 0.99) * 1e3:7.2f} ms")
    print(f"  PostgreSQL / SQLite (median): "
          f"{statistics.median(pg) / statistics.median(sqlite):.2f}")
    print(f"instance A's commit until instance B has it ({len(hops)} changes): median "
          f"{statistics.median(hops) * 1e3:.2f} ms, p99 {quantile(hops, 0.99) * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
