import pytest
from hypothesis import given, settings, strategies as st

from controller.network.forwarding import (build_control_flows, compute_desired_flows,
                                           compute_paths, forwarding_cookie)
from controller.network.topology import LinkKey
from controller.monitor.mirror import (ChosenTraffic, MirrorCopies, MirrorPlan, MirrorRule,
                                       parse_rule, sampled)
from controller.network.topology import SwitchPort
from controller.openflow.pipeline import PRIORITY, Component

from tests.unit.controller.fakes import FakeNetwork, build_topology, desired_flows, mac

# Ring of 4 switches: port 1 host, port 2 to next, port 3 to previous.
RING = ({1: 3, 2: 3, 3: 3, 4: 3}, [(1, 2, 2, 3), (2, 2, 3, 3), (3, 2, 4, 3), (4, 2, 1, 3)])


def ring_with_hosts():
    topology = build_topology(*RING)
    for dpid in (1, 2, 3, 4):
        topology.learn_host(mac(dpid), dpid, 1, f"10.0.0.{dpid}")
    return topology


def test_every_host_reaches_every_other_on_a_ring():
    topology = ring_with_hosts()
    flows = compute_desired_flows(topology, [1, 2, 3, 4])
    net = FakeNetwork(topology, flows)
    for src in (1, 2, 3, 4):
        for dst in (1, 2, 3, 4):
            if src != dst:
                fields = {"eth_src": mac(src), "eth_dst": mac(dst), "eth_type": 0x0800}
                assert net.deliver(src, fields) == ("host", dst, 1)


def test_arp_and_lldp_always_go_to_the_controller_and_unknown_traffic_too():
    topology = ring_with_hosts()
    net = FakeNetwork(topology, compute_desired_flows(topology, [1, 2, 3, 4]))
    arp = {"eth_src": mac(1), "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806}
    assert net.deliver(1, arp) == ("controller", 1)
    lldp = {"eth_src": mac(9), "eth_dst": "01:80:c2:00:00:0e", "eth_type": 0x88cc}
    assert net.deliver(2, lldp) == ("controller", 2)
    unknown = {"eth_src": mac(1), "eth_dst": mac(99), "eth_type": 0x0800}
    assert net.deliver(1, unknown) == ("controller", 1)


def test_a_hosts_unicast_arp_about_itself_takes_the_pairs_path_and_other_arp_does_not():
    topology = ring_with_hosts()
    net = FakeNetwork(topology, compute_desired_flows(topology, [1, 2, 3, 4]))
    probe = {"in_port": 1, "eth_src": mac(1), "eth_dst": mac(3), "eth_type": 0x0806,
             "arp_sha": mac(1), "arp_spa": "10.0.0.1"}   # a neighbour's reachability probe: no controller needed
    assert net.deliver(1, dict(probe)) == ("host", 3, 1)   # (deliver changes in_port)
    assert net.deliver(3, {**probe, "in_port": 1, "eth_src": mac(3), "eth_dst": mac(1), "arp_sha": mac(3),
                           "arp_spa": "10.0.0.3"}) == ("host", 1, 1)   # and its reply
    claim = {**probe, "arp_spa": "10.0.0.2"}   # host 1 claiming host 2's address
    assert net.deliver(1, claim) == ("controller", 1)
    borrowed = {**probe, "arp_sha": mac(2)}    # or someone else's MAC inside the ARP
    assert net.deliver(1, borrowed) == ("controller", 1)
    request = {**probe, "eth_dst": "ff:ff:ff:ff:ff:ff"}   # a broadcast: the controller's
    assert net.deliver(1, request) == ("controller", 1)
    arp_rules = [e for e in compute_desired_flows(topology, [1])[1]
                 if dict(e.match).get("eth_type") == 0x0806]
    assert {e.priority for e in arp_rules} == {PRIORITY["arp_forward"],
                                               PRIORITY["arp_to_controller"]}


def test_link_down_reroutes_around_the_ring():
    topology = ring_with_hosts()
    before = compute_desired_flows(topology, [1, 2, 3, 4])
    assert FakeNetwork(topology, before).deliver(1, {"eth_src": mac(1), "eth_dst": mac(2)}) \
        == ("host", 2, 1)
    lost = topology.set_port(1, topology.port(1, 2).__class__(2, "s1-eth2", mac(2), up=False))
    assert set(lost) == {LinkKey(1, 2, 2, 3), LinkKey(2, 3, 1, 2)}
    after = compute_desired_flows(topology, [1, 2, 3, 4])
    net = FakeNetwork(topology, after)
    assert net.deliver(1, {"eth_src": mac(1), "eth_dst": mac(2)}) == ("host", 2, 1)
    out_s1 = [e for e in after[1] if dict(e.match).get("eth_dst") == mac(2)]
    assert [e.instructions[0][1] for e in out_s1] == [(("output", 3),)]


def test_same_topology_same_flows_and_one_cookie_per_pair():
    a = compute_desired_flows(ring_with_hosts(), [1, 2, 3, 4])
    b = compute_desired_flows(ring_with_hosts(), [1, 2, 3, 4])
    assert a == b
    cookie = forwarding_cookie(mac(1), mac(3))
    carrying = [dpid for dpid, flows in a.items() if any(e.cookie == cookie for e in flows)]
    assert len(carrying) == 3  # s1, one middle switch, s3
    assert all(e.component in (Component.CONTROL, Component.FORWARDING)
               for flows in a.values() for e in flows)


def test_disconnected_switches_get_nothing_and_partitioned_pairs_no_flows():
    topology = ring_with_hosts()
    flows = compute_desired_flows(topology, [1, 2])
    assert set(flows) == {1, 2}
    pairs = {dict(e.match).get("eth_dst") for e in flows[1] | flows[2]}
    assert mac(3) not in pairs and mac(4) not in pairs
    assert build_control_flows() <= flows[1]


def test_hosts_on_link_ports_are_not_used():
    topology = ring_with_hosts()
    topology.learn_host(mac(50), 1, 2)  # port 2 of s1 is an inter-switch port
    flows = compute_desired_flows(topology, [1, 2, 3, 4])
    assert all(dict(e.match).get("eth_dst") != mac(50) for f in flows.values() for e in f)


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 9), st.data())
def test_random_meshes_deliver_without_loops(n, data):
    edges = {(i, i + 1) for i in range(1, n)}  # a line keeps it connected
    extra = data.draw(st.sets(st.tuples(st.integers(1, n), st.integers(1, n)), max_size=n))
    edges |= {tuple(sorted(e)) for e in extra if e[0] != e[1]}
    next_port = {d: 2 for d in range(1, n + 1)}
    links = []
    for a, b in sorted(edges):
        links.append((a, next_port[a], b, next_port[b]))
        next_port[a] += 1
        next_port[b] += 1
    topology = build_topology({d: next_port[d] - 1 for d in range(1, n + 1)}, links)
    for d in range(1, n + 1):
        topology.learn_host(mac(d), d, 1)
    flows = compute_desired_flows(topology, list(range(1, n + 1)))
    net = FakeNetwork(topology, flows)
    paths = compute_paths(topology.graph())
    for src in range(1, n + 1):
        for dst in range(1, n + 1):
            if src != dst:
                assert net.deliver(src, {"eth_src": mac(src), "eth_dst": mac(dst)}) == ("host", dst, 1)
                assert len(paths[src][dst]) - 1 == len(paths[dst][src]) - 1


def test_mirroring_copies_a_customers_traffic_without_changing_forwarding():
    topology = ring_with_hosts()
    plain = compute_desired_flows(topology, [1, 2, 3, 4])
    plan = MirrorPlan(SwitchPort(2, 4), (ChosenTraffic(MirrorRule("c1"), frozenset({mac(1)})),))
    mirrored = desired_flows(topology, [1, 2, 3, 4], MirrorCopies(plan))
    assert {d: plain[d] for d in (1, 3, 4)} == {d: mirrored[d] for d in (1, 3, 4)}
    changed = mirrored[2] - plain[2]
    assert changed and all(
        (dict(e.match).get("eth_src") == mac(1) or dict(e.match).get("eth_dst") == mac(1))
        and e.instructions[0][1][-1] == ("output", 4) for e in changed)
    # the original output stays first: forwarding is what it was
    net = FakeNetwork(topology, mirrored)
    assert net.deliver(1, {"eth_src": mac(1), "eth_dst": mac(3)}) == ("host", 3, 1)
    assert net.copies == [(2, 4)]
    untouched = {e for e in mirrored[2] if mac(1) not in dict(e.match).values()}
    assert untouched <= plain[2]


def test_mirroring_one_service_copies_only_its_ports_and_forwards_the_same():
    topology = ring_with_hosts()
    plain = compute_desired_flows(topology, [1, 2, 3, 4])
    rules = (ChosenTraffic(MirrorRule("c1", "voice"), frozenset({mac(1)})),)
    mirrored = desired_flows(topology, [1, 2, 3, 4], MirrorCopies(MirrorPlan(SwitchPort(2, 4), rules)))
    assert plain[2] <= mirrored[2]  # the pair flows themselves are untouched
    extra = mirrored[2] - plain[2]
    assert extra and all(e.priority == PRIORITY["mirror"] and e.component == Component.MIRROR
                         for e in extra)
    voice_ip = {"eth_src": mac(1), "eth_dst": mac(3), "eth_type": 0x0800, "ip_proto": 17}
    for fields, copied in [({**voice_ip, "udp_dst": 5004, "udp_src": 40000}, True),
                           ({**voice_ip, "udp_src": 5060, "udp_dst": 40000}, True),
                           ({**voice_ip, "udp_dst": 1234, "udp_src": 40000}, False),
                           ({"eth_src": mac(3), "eth_dst": mac(1), "eth_type": 0x86DD,
                             "ip_proto": 17, "udp_dst": 5004}, True)]:
        net = FakeNetwork(topology, mirrored)
        expected = ("host", int(fields["eth_dst"][-1]), 1)
        assert net.deliver(int(fields["eth_src"][-1]), fields) == expected
        assert net.copies == ([(2, 4)] if copied else []), fields


def test_sampling_mirrors_a_stable_share_of_host_pairs():
    pairs = [(mac(1), f"00:00:00:00:{i // 256:02x}:{i % 256:02x}") for i in range(2000)]
    chosen = [p for p in pairs if sampled(*p, 25)]
    assert 400 < len(chosen) < 600  # about a quarter
    assert chosen == [p for p in pairs if sampled(*p, 25)]  # the same every time
    assert all(sampled(*p, 100) for p in pairs)


@pytest.mark.parametrize("text, rule", [
    ("c1", MirrorRule("c1", "", 100, "config")),
    ("c1:voice", MirrorRule("c1", "voice", 100, "config")),
    ("c1:*:10", MirrorRule("c1", "", 10, "config")),
])
def test_mirror_rules_parse(text, rule):
    assert parse_rule(text) == rule


@pytest.mark.parametrize("text, words", [
    ("c1:telepathy", "not one of"), ("c1:voice:0", "1..100"), (":voice", "customer_id"),
    ("c1:voice:ten", "whole number")])
def test_bad_mirror_rules_say_what_is_wrong(text, words):
    with pytest.raises(ValueError, match=words):
        parse_rule(text)
