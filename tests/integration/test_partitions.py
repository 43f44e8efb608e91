"""Quality by customer partition: two controller instances on one PostgreSQL store, one etcd
and one NATS JetStream (all started by the test on 127.0.0.1), with four customer partitions
and four customers on a Mininet dumbbell, one in each partition. A probe publishes degraded
voice records of all four on the stream. Each instance takes the records of its own two
partitions only (the others it leaves), together they take each record once, and each
instance, the leader among them, sees all four customers degraded: its own two from its own
book, the others' from their digest. The instance that is not the leader is killed with
SIGKILL: the leader takes its partitions over, replays their last seconds from the stream
(so its own book has the dead one's customers' recent samples at once, not only from then on)
and goes on seeing all four degraded."""

import threading
import time

from cems.v1 import qoe_pb2, qoe_pb2_grpc

from controller.cluster.partitions import partition_of
from lab.emulation import build_network, exclusive_network, start_network, wait_for
from lab.servers import etcd, nats, nats_permissions, postgres
from mininet_topos import DumbbellTopo
from probes.flows import FlowRecord
from probes.stream import StreamExporter

from tests.integration.feeds import create_customers

PARTITIONS = 4


def customers_one_per_partition() -> list[str]:
    chosen, seen = [], set()
    for i in range(1000):
        name = f"cust{i}"
        if partition_of(name, PARTITIONS) not in seen:
            seen.add(partition_of(name, PARTITIONS))
            chosen.append(name)
        if len(chosen) == PARTITIONS:
            return chosen
    raise AssertionError("no four names in four partitions")


def degraded(instance) -> set[str]:
    with instance.channel() as channel:
        reply = qoe_pb2_grpc.QoeServiceStub(channel).ListExperience(
            qoe_pb2.ListExperienceRequest(service="voice", status="degraded"), timeout=5)
    return {e.customer_id for e in reply.experience}


def own_voice(instance, customer: str) -> tuple[int, str]:
    """(samples of the customer's last 60 s, status) of its voice in the instance's own book;
    (0, "") while the instance shows another's digest, which has the 10 s figures only."""
    with instance.channel() as channel:
        reply = qoe_pb2_grpc.QoeServiceStub(channel).GetExperience(
            qoe_pb2.GetExperienceRequest(customer_id=customer), timeout=5)
    for service in reply.services:
        for window in service.windows:
            if service.service == "voice" and window.window_s == 60:
                return window.count, service.status
    return 0, ""


def own_partitions(instance) -> set[int]:
    status = instance.status()
    return {p for m in status.cluster if m.instance == status.instance for p in m.partitions}


class Feed:
    """Degraded voice (10 % loss) of each address to 192.0.2.10, a record per address every
    half second, on the stream."""

    def __init__(self, exporter, addresses):
        self.exporter, self.addresses = exporter, addresses
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.offered = 0

    def _run(self):
        while not self.stop.is_set():
            now = time.time()
            self.exporter.offer([FlowRecord(
                address, "192.0.2.10", 17, 40000, 5004, "rtp", now - 0.5, now, 25, 5000,
                80_000.0, 46, {"rtp_loss_ratio": 0.10, "rtp_jitter_ms": 1.0,
                               "rtp_jitter_max_ms": 2.0, "rtp_payload_type": 0.0,
                               "rtp_mean_burst_packets": 1.0, "rtp_expected": 25.0,
                               "rtp_lost": 2.5}) for address in self.addresses])
            self.offered += len(self.addresses)
            self.stop.wait(0.5)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def test_each_instance_takes_its_partitions_and_sees_every_customer(make_controller, tmp_path):
    users = nats_permissions(["edge1"])
    password = tmp_path / "nats-password"
    password.write_text(users["cems"][0])
    with postgres() as store, etcd() as cluster, nats(users) as (url, _work):
        config = (f'[cluster]\netcd = "{cluster}"\nlease_s = 2\n'
                  f'[records]\nnats = "{url}"\nnats_user = "cems"\n'
                  f'nats_password_file = "{password}"\npartitions = {PARTITIONS}\n')
        instances = [make_controller(store_url=store, workdir=str(tmp_path / f"i{i}"),
                                     extra_config=config) for i in range(2)]
        wait_for(lambda: all(len(own_partitions(i)) == 2 for i in instances), 30,
                 "two partitions for each instance")
        assert own_partitions(instances[0]).isdisjoint(own_partitions(instances[1]))
        with exclusive_network():
            net = build_network(DumbbellTopo(n=2), [i.openflow_port for i in instances])
            try:
                start_network(net)
                net.pingAll(timeout=1)
                wait_for(lambda: all(i.status().hosts == 4 for i in instances), 30,
                         "every instance knows the four hosts")
                names = customers_one_per_partition()
                hosts = dict(zip(names, net.get("l1", "l2", "r1", "r2")))
                create_customers(instances[0], net.get("s1"), dict(list(hosts.items())[:2]))
                create_customers(instances[0], net.get("s2"), dict(list(hosts.items())[2:]))
                exporter = StreamExporter(url, "edge1", instances[0].probe_token("edge1"),
                                          "edge1", users["edge1"][0], batch=20,
                                          interval_s=0.2).start()
                try:
                    with Feed(exporter, [h.IP() for h in hosts.values()]) as feed:
                        for instance in instances:
                            wait_for(lambda: degraded(instance) == set(names), 40,
                                     "all four customers degraded on each instance")
                        statuses = [i.status() for i in instances]
                        for status in statuses:   # each reads every batch, takes its half
                            assert status.stream.records > 0
                            assert status.stream.records_elsewhere > 0
                        leader = next(i for i, s in zip(instances, statuses) if s.master)
                        other = next(i for i in instances if i is not leader)
                        for status in statuses:
                            print(f"{status.instance}: {status.stream.records} records "
                                  f"taken, {status.stream.records_elsewhere} left to the "
                                  f"other; leader {status.master}")
                        # eight seconds of records before the kill, to be replayed
                        wait_for(lambda: feed.offered >= 8 * 2 * len(names), 20,
                                 "eight seconds of voice records")
                        theirs = own_partitions(other)
                        took = {p for p in range(PARTITIONS)} - theirs
                        other.stop(kill=True)
                        killed = time.monotonic()
                        wait_for(lambda: len(own_partitions(leader)) == PARTITIONS, 30,
                                 "the leader takes the dead instance's partitions", 0.05)
                        taken = time.monotonic()
                        print(f"partitions taken over {taken - killed:.1f} s after the kill")
                        assert took <= own_partitions(leader)
                        # their last seconds replayed: the leader's own book has about 16
                        # samples of each (two a second for the eight seconds or more) besides
                        # the two a second it takes from now on
                        replayed = wait_for(lambda: leader.status().stream.records_replayed,
                                            10, "the replay of the partitions taken", 0.05)
                        moved = [n for n in names if partition_of(n, PARTITIONS) in theirs]
                        for name in moved:
                            (count, _), since = own_voice(leader, name), time.monotonic() - taken
                            print(f"{name}: {count} samples of the last minute in the "
                                  f"leader's own book {since:.1f} s after it took them over")
                            assert count >= 2 * since + 10, (count, since)
                        print(f"{replayed} records replayed")
                        wait_for(lambda: all(own_voice(leader, n)[1] == "degraded"
                                             for n in moved), 40,
                                 "the dead one's customers degraded in the leader's own book",
                                 0.05)
                        print(f"their voice degraded in the leader's own book "
                              f"{time.monotonic() - killed:.1f} s after the kill, "
                              f"{time.monotonic() - taken:.1f} s after it took them over")
                        wait_for(lambda: degraded(leader) == set(names), 40,
                                 "all four degraded on the leader alone")
                        assert feed.offered > 0
                finally:
                    exporter.close()
                status = leader.status()
                assert status.stream.records_elsewhere > 0 and status.stream.rejected == 0
            finally:
                net.stop()
