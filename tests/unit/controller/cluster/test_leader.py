"""Leadership over a real etcd (started by the test on 127.0.0.1): one leader at a time, a
new one with a larger generation when the old one leaves or its lease expires, and a leader
cut off from etcd steps down before anyone else can take over."""

import pytest

from controller.cluster.etcd import Etcd, EtcdError
from controller.cluster.leader import Leadership


@pytest.fixture(scope="module")
def etcd_url():
    from lab.servers import etcd  # pylint: disable=import-outside-toplevel
    with etcd() as url:
        yield url


def test_one_leader_and_a_larger_generation_after_it_leaves(etcd_url):
    heard = []
    a = Leadership(Etcd(etcd_url), "/t1/master", "a", 2,
                   on_change=lambda leader, gen: heard.append(("a", leader, gen)))
    b = Leadership(Etcd(etcd_url), "/t1/master", "b", 2,
                   on_change=lambda leader, gen: heard.append(("b", leader, gen)))
    a.about, b.about = "127.0.0.1:1", "127.0.0.1:2"
    a.step()
    b.step()
    assert a.leader and not b.leader and b.holder == "a"
    b.step()
    assert b.members == (("a", "127.0.0.1:1"), ("b", "127.0.0.1:2"))   # both alive
    assert 0 <= b.lease_age_s() < 1
    first = a.generation
    a.step()
    assert heard == [("a", True, first)]   # renewing changes nothing
    a.stop()                               # revokes its lease: the key goes at once
    b.step()
    assert b.leader and b.generation > first
    assert heard[-1] == ("b", True, b.generation)
    b.stop()


def test_a_dead_leaders_lease_expires_and_another_takes_over(etcd_url):
    import time
    a = Leadership(Etcd(etcd_url), "/t2/master", "a", 1)
    b = Leadership(Etcd(etcd_url), "/t2/master", "b", 1)
    a.step()
    assert a.leader
    deadline = time.monotonic() + 10        # a is "killed": it renews no more
    while time.monotonic() < deadline and not b.leader:
        b.step()
        time.sleep(0.2)
    assert b.leader and b.generation > a.generation
    b.stop()


def test_a_leader_cut_off_from_etcd_steps_down_before_its_lease_ends(etcd_url):
    now = [0.0]
    heard = []
    leadership = Leadership(Etcd(etcd_url), "/t3/master", "a", 3, clock=lambda: now[0],
                            on_change=lambda leader, gen: heard.append(leader))
    leadership.step()
    assert leadership.leader
    leadership.etcd = Etcd("http://127.0.0.1:1", timeout_s=0.2)   # the network is cut
    now[0] = 1.0
    leadership.step()
    assert leadership.leader and "cannot reach etcd" in leadership.problem
    now[0] = 2.1                           # more than 2/3 of the 3 s lease without renewal
    leadership.step()
    assert not leadership.leader and heard == [True, False]
    with pytest.raises(EtcdError, match="lease/grant"):
        Etcd("http://127.0.0.1:1", timeout_s=0.2).grant(1)


def test_cluster_configuration_is_checked():
    from controller.config import ConfigError, parse_config  # pylint: disable=import-outside-toplevel
    config = parse_config({"cluster": {"etcd": "http://127.0.0.1:2379", "lease_s": 2}})
    assert (config.cluster_etcd, config.cluster_lease_s, config.cluster_key) == \
        ("http://127.0.0.1:2379", 2, "/cems/master")
    for bad in ({"etcd": "127.0.0.1:2379"}, {"lease_s": 0.1}, {"key": "cems"}):
        with pytest.raises(ConfigError, match="cluster"):
            parse_config({"cluster": bad})


def test_switches_are_shared_taken_over_when_an_instance_dies_and_handed_back(etcd_url):
    import time
    heard = []

    def instance(name):
        leadership = Leadership(Etcd(etcd_url), "/t4/master", name, 1,
                                on_switch=lambda dpid, master, gen: heard.append(
                                    (name, dpid, master, gen)))
        leadership.seen = frozenset({1, 2, 3, 4})
        return leadership

    def rounds(*instances, until, limit_s=10):
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and not until():
            for leadership in instances:
                leadership.step()
            time.sleep(0.05)
        assert until()

    a, b = instance("a"), instance("b")
    rounds(a, b, until=lambda: len(a.switches) == len(b.switches) == 2)
    assert set(a.switches) | set(b.switches) == {1, 2, 3, 4}
    a.step()                                # a reads what b took last
    assert a.holders == b.holders and a.holder_of(min(b.switches))[0] == "b"
    assert dict(a.connected)["b"] == frozenset({1, 2, 3, 4})
    b_switches = dict(b.switches)
    # b is killed: it renews nothing; its lease expires and a takes its switches, each with
    # a larger generation than b had
    rounds(a, until=lambda: len(a.switches) == 4)
    assert all(a.switches[d] > g for d, g in b_switches.items())
    # b comes back as a new instance: a hands its share back, one switch per round
    c = instance("c")
    since = len(heard)
    rounds(a, c, until=lambda: len(a.switches) == len(c.switches) == 2)
    a.step()
    lost = [(d, g) for name, d, master, g in heard[since:] if name == "a" and not master]
    assert len(lost) == 2 and all(a.holder_of(d)[1] > g for d, g in lost)
    assert not set(a.switches) & set(c.switches)
    a.stop()
    c.stop()


def test_customer_partitions_are_shared_taken_over_and_handed_back_without_a_gap(etcd_url):
    import time
    a = Leadership(Etcd(etcd_url), "/t5/master", "a", 1, partitions=8)
    b = Leadership(Etcd(etcd_url), "/t5/master", "b", 1, partitions=8)
    everything = frozenset(range(8))

    def rounds(*instances, until, limit_s=10):
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and not until():
            for leadership in instances:
                leadership.step()
                # never a partition nobody takes, once both took part
                assert a.taking | b.taking == everything or not (a.taking and b.taking)
            time.sleep(0.05)
        assert until()

    rounds(a, b, until=lambda: len(a.taking) == len(b.taking) == 4 and
           len(a.partition_holders) == 8 and not a.taking & b.taking)
    assert a.taking | b.taking == everything
    a.step()
    assert {p for p, h in a.partition_holders.items() if h == "b"} == b.taking
    # b is killed: its keys expire with its lease; a takes all of them
    rounds(a, until=lambda: a.taking == everything and len(a.partition_holders) == 8)
    assert set(a.partition_holders.values()) == {"a"}
    # a newcomer gets its share back, while a keeps taking each until it has handed it back
    c = Leadership(Etcd(etcd_url), "/t5/master", "c", 1, partitions=8)
    rounds(a, c, until=lambda: len(a.taking) == len(c.taking) == 4 and
           not a.taking & c.taking and len(a.partition_holders) == 8)
    assert a.taking | c.taking == everything
    a.stop()
    c.stop()
