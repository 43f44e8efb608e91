"""Three controller instances on one PostgreSQL store and one etcd (both started by the test
on 127.0.0.1), every switch connected to all three: one instance is master of the switches,
the others SLAVE. The master is killed with SIGKILL while a ping stream runs, and an SLS
change is made through a standby while nobody is master: another instance takes over once
the etcd lease expires, forwarding goes on meanwhile, the flows are the same after it
reconciled, the SLS change made during the failover and one made through the new master
each reach the meter once, and the killed instance, restarted, stays standby without
disturbing anything."""

import subprocess
import time
import urllib.request

from cems.v1 import customer_pb2 as pb
from cems.v1 import customer_pb2_grpc as pb_grpc

from lab.emulation import build_network, exclusive_network, start_network, wait_for
from lab.servers import etcd, postgres
from mininet_topos import DumbbellTopo

from tests.integration.feeds import create_customers
from tests.integration.test_customer_service import ofctl

M = 1_000_000
LEASE_S = 2


def flows(bridge: str) -> list[str]:
    """The bridge's flows without their counters."""
    return sorted(line.strip() for line in ofctl("--no-stats", "dump-flows", bridge)
                  .splitlines() if "cookie=" in line)


def master_of(instances):
    masters = []
    for instance in instances:
        if instance.process is None or instance.process.poll() is not None:
            continue
        try:
            status = instance.status()
        except Exception:  # pylint: disable=broad-except
            continue
        if status.master and status.switches_ready == 2:
            masters.append(instance)
    return masters[0] if len(masters) == 1 else None


def test_the_master_dies_another_takes_over_and_forwarding_goes_on(make_controller, tmp_path):
    with postgres() as store, etcd() as cluster:
        config = f'[cluster]\netcd = "{cluster}"\nlease_s = {LEASE_S}\n'
        instances = [make_controller(store_url=store, workdir=str(tmp_path / f"i{i}"),
                                     extra_config=config) for i in range(3)]
        with exclusive_network():
            net = build_network(DumbbellTopo(n=2, bottleneck_mbps=20),
                                [i.openflow_port for i in instances])
            try:
                start_network(net)
                first = wait_for(lambda: master_of(instances), 40, "one master of both switches")
                standby = [i for i in instances if i is not first]
                view = first.status()
                assert len(view.cluster) == 3 and \
                    [(m.instance, list(m.switches)) for m in view.cluster if m.master] == \
                    [(view.instance, [1, 2])]
                # a standby sees the same: the master's switches are those it watches
                assert [list(m.switches) for m in standby[0].status().cluster
                        if m.master] == [[1, 2]]
                assert "cems_cluster_switches 2.0" in urllib.request.urlopen(
                    f"http://127.0.0.1:{first.metrics_port}/metrics", timeout=5).read().decode()
                assert "cems_cluster_master 1.0" in urllib.request.urlopen(
                    f"http://127.0.0.1:{first.metrics_port}/metrics", timeout=5).read().decode()
                assert all(not i.status().master and i.status().switches_connected == 0
                           for i in standby)
                net.pingAll(timeout=1)
                assert net.pingAll(timeout=1) == 0.0
                l1, r1, s1 = net.get("l1", "r1", "s1")
                tokens = create_customers(first, s1, {"alice": l1})
                wait_for(lambda: "rate=2000" in ofctl("dump-meters", "s1"), 15,
                         "alice's meter from the first master")
                before = {bridge: flows(bridge) for bridge in ("s1", "s2")}

                stream = l1.popen(["ping", "-c", "100", "-i", "0.1", r1.IP()],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                time.sleep(2)
                killed = time.monotonic()
                first.stop(kill=True)
                # while nobody is master: an SLS change through a standby is stored, and the
                # new master applies it
                with standby[0].channel() as channel:
                    pb_grpc.SlsServiceStub(channel).ChangeSls(pb.ChangeSlsRequest(
                        service_class=pb.SERVICE_CLASS_BRONZE, rate_bps=3 * M),
                        metadata=(("authorization", f"Bearer {tokens['alice']}"),))
                second = wait_for(lambda: master_of(standby), 30, "a new master")
                took = time.monotonic() - killed
                # it knew the hosts the first master learned (the store), so reconciling
                # took no path away
                assert second.status().hosts == 4
                out, _ = stream.communicate(timeout=60)
                received = int(out.split(" received")[0].rsplit(" ", 1)[-1])
                print(f"new master {took:.1f} s after the kill; {received} of 100 pings answered")
                assert received >= 95, out   # forwarding went on while nobody was master
                assert took < LEASE_S + 10, took
                wait_for(lambda: {b: flows(b) for b in ("s1", "s2")} == before, 30,
                         "the same flows after the new master reconciled")
                wait_for(lambda: "rate=3000" in ofctl("dump-meters", "s1"), 15,
                         "the SLS change made during the failover on s1")
                time.sleep(3)   # time for it to be applied twice, if it were
                table = ofctl("dump-meters", "s1")
                assert table.count("meter=") == 1 and table.count("rate=") == 1 and \
                    "rate=3000" in table, table

                with second.channel() as channel:
                    pb_grpc.SlsServiceStub(channel).ChangeSls(pb.ChangeSlsRequest(
                        service_class=pb.SERVICE_CLASS_GOLD, rate_bps=6 * M),
                        metadata=(("authorization", f"Bearer {tokens['alice']}"),))
                wait_for(lambda: "rate=6000" in ofctl("dump-meters", "s1"), 15,
                         "the SLS change through the new master on s1")
                meters = [l for l in ofctl("dump-meters", "s1").splitlines() if "meter=" in l]
                assert len(meters) == 1, meters   # applied once: one meter, the new rate

                first.start()                     # the killed instance comes back: standby
                wait_for(lambda: first.status().switches_connected == 0 and
                         not first.status().master, 20, "the restarted instance as standby")
                time.sleep(LEASE_S * 2)
                assert master_of(instances) is second
                assert net.pingAll(timeout=1) == 0.0
            finally:
                net.stop()
                for instance in instances:   # before their store and etcd go
                    instance.stop()
