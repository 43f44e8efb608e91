"""Failover of a switch's master, as medians of several kills (issue 15's benchmark).

    .venv/bin/python bench/bench_failover.py [--runs 5] [--lease 2]

Three controller instances on one PostgreSQL store and one etcd (started here, on
127.0.0.1), both switches of a dumbbell in Mininet connected to all three, as in
tests/integration/test_cluster.py: each switch has its own master. Each run kills s1's
master with SIGKILL and measures:
- takeover: kill -> another instance is master of s1 and has reconciled it (and every
  switch has one master again);
- change applied: an SLS change sent through another instance just after the kill -> the
  new rate on s1's meter, put there by s1's new master (what a customer changing a class
  during a failover sees);
- pings answered of 50 sent across the dumbbell during the run (forwarding goes on with no
  master: the switches keep their flows).
The killed instance is then restarted (it rejoins the cluster) before the next run.

The floor is the etcd lease (`cluster.lease_s`): a dead master's keys live until its lease
expires, then another instance's next round (every lease/4) creates them. The ratio against
the lease is printed.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cems.v1 import customer_pb2 as pb  # noqa: E402
from cems.v1 import customer_pb2_grpc as pb_grpc  # noqa: E402

from lab.emulation import (ControllerProcess, build_network, exclusive_network,  # noqa: E402
                           start_network, wait_for)
from lab.servers import etcd, postgres  # noqa: E402
from mininet_topos import DumbbellTopo  # noqa: E402
from tests.integration.feeds import create_customers  # noqa: E402
from tests.integration.test_cluster import masters  # noqa: E402
from tests.integration.test_customer_service import ofctl  # noqa: E402

M = 1_000_000


def change_sls(instance, token: str, rate_bps: int) -> None:
    with instance.channel() as channel:
        pb_grpc.SlsServiceStub(channel).ChangeSls(pb.ChangeSlsRequest(
            service_class=pb.SERVICE_CLASS_GOLD, rate_bps=rate_bps),
            metadata=(("authorization", f"Bearer {token}"),), timeout=10)


def one_failover(instances, net, token: str, rate_bps: int) -> dict:
    master = wait_for(lambda: masters(instances), 40, "one master for each switch")[1]
    standby = [i for i in instances if i is not master]
    l1, r1 = net.get("l1", "r1")
    pings = l1.popen(["ping", "-c", "50", "-i", "0.2", r1.IP()], stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    killed = time.monotonic()
    master.stop(kill=True)
    change_sls(standby[0], token, rate_bps)   # stored now; only a master may apply it
    applied = None
    new_master = None
    deadline = killed + 60
    while time.monotonic() < deadline and (applied is None or new_master is None):
        if applied is None and f"rate={rate_bps // 1000}" in ofctl("dump-meters", "s1"):
            applied = time.monotonic() - killed
        if new_master is None:
            new_master = masters(standby)
            took = time.monotonic() - killed
        time.sleep(0.05)
    if applied is None or new_master is None:
        raise RuntimeError("no new master, or the change never reached s1, within 60 s")
    out, _ = pings.communicate(timeout=60)
    received = int(out.split(" received")[0].rsplit(" ", 1)[-1])
    master.start()                                     # back in the cluster
    wait_for(lambda: len(master.status().cluster) == 3, 20, "the restarted instance")
    return {"takeover_s": took, "applied_s": applied, "pings": received}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lease", type=float, default=2.0, help="cluster.lease_s")
    args = parser.parse_args()
    from mininet.log import setLogLevel  # pylint: disable=import-outside-toplevel
    setLogLevel("warning")
    results = []
    with tempfile.TemporaryDirectory(prefix="cems-bench-failover-") as work, \
            postgres() as store, etcd() as cluster:
        config = f'[cluster]\netcd = "{cluster}"\nlease_s = {args.lease}\n'
        instances = []
        try:
            for i in range(3):
                instances.append(ControllerProcess(workdir=os.path.join(work, f"i{i}"),
                                                   store_url=store, extra_config=config))
                os.makedirs(instances[-1].workdir)
                instances[-1].start()
            with exclusive_network():
                net = build_network(DumbbellTopo(n=2, bottleneck_mbps=20),
                                    [i.openflow_port for i in instances])
                try:
                    start_network(net)
                    first = wait_for(lambda: masters(instances), 40, "a master each")[1]
                    net.pingAll(timeout=1)
                    tokens = create_customers(first, net.get("s1"), {"alice": net.get("l1")})
                    for run in range(args.runs):
                        rate = (3 + run % 5) * M
                        result = one_failover(instances, net, tokens["alice"], rate)
                        results.append(result)
                        print(f"run {run + 1}: takeover {result['takeover_s']:.2f} s, SLS "
                              f"change on s1 {result['applied_s']:.2f} s after the kill, "
                              f"{result['pings']}/50 pings answered", flush=True)
                finally:
                    net.stop()
        finally:
            for instance in instances:
                instance.stop()
    takeover = statistics.median(r["takeover_s"] for r in results)
    applied = statistics.median(r["applied_s"] for r in results)
    print(f"\nfailover over {len(results)} kills, cluster.lease_s = {args.lease:g}:")
    print(f"  takeover (s1 reconciled)        median {takeover:.2f} s  "
          f"(min {min(r['takeover_s'] for r in results):.2f}, max "
          f"{max(r['takeover_s'] for r in results):.2f}); {takeover / args.lease:.2f} x the lease")
    print(f"  SLS change on the switch        median {applied:.2f} s  "
          f"(min {min(r['applied_s'] for r in results):.2f}, max "
          f"{max(r['applied_s'] for r in results):.2f})")
    print(f"  pings answered                  median "
          f"{statistics.median(r['pings'] for r in results):.0f} of 50")
    return 0


if __name__ == "__main__":
    sys.exit(main())
