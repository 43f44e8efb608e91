from controller.csm.mapping import compute_customer_state, meter_for
from controller.csm.model import Customer, CustomerState, ServiceClass, Sls
from controller.openflow.pipeline import METER_BASE, MeterSpec, diff_meters
from controller.network.forwarding import compute_desired_flows

from tests.unit.controller.fakes import FakeNetwork, build_topology, mac

M = 1_000_000


def customer(cid, dpid, port, hosts, service_class, rate, index):
    return CustomerState(Customer(cid, cid, access_dpid=dpid, access_port=port, hosts=hosts),
                         Sls(cid, service_class, rate, 0.0), METER_BASE + index)


def test_customer_traffic_is_metered_marked_and_still_forwarded():
    topology = build_topology({1: 3, 2: 3}, [(1, 3, 2, 3)])
    topology.learn_host(mac(1), 1, 1)
    topology.learn_host(mac(2), 2, 1)
    alice = customer("alice", 1, 1, (mac(1),), ServiceClass.GOLD, 8 * M, 1)
    flows, meters = compute_customer_state([alice], {1, 2})
    assert meters == {1: {METER_BASE + 1: MeterSpec(METER_BASE + 1, 8000, 800)}, 2: {}}
    desired = compute_desired_flows(topology, [1, 2])
    net = FakeNetwork(topology, {d: desired[d] | frozenset(flows[d]) for d in (1, 2)})
    packet = {"eth_src": mac(1), "eth_dst": mac(2), "eth_type": 0x0800, "ip_dscp": 0}
    assert net.deliver(1, packet) == ("host", 2, 1)
    assert packet["ip_dscp"] == 46 and net.meters_hit == [(1, METER_BASE + 1)]
    assert packet["queue"] == 1
    arp = {"eth_src": mac(1), "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806}
    assert net.deliver(1, arp) == ("controller", 1)  # control traffic is not metered
    other = {"eth_src": mac(1), "eth_dst": mac(2), "eth_type": 0x86DD}
    assert net.deliver(1, other) == ("host", 2, 1) and net.meters_hit[-1] == (1, METER_BASE + 1)
    reply = {"eth_src": mac(2), "eth_dst": mac(1), "eth_type": 0x0800, "ip_dscp": 0}
    assert net.deliver(2, reply) == ("host", 1, 1) and reply["ip_dscp"] == 0


def test_classes_give_their_dscp_and_only_mapped_switches_get_state():
    states = [customer("a", 1, 1, (mac(1),), ServiceClass.SILVER, 2 * M, 1),
              customer("b", 1, 2, (mac(2), mac(3)), ServiceClass.BRONZE, 1 * M, 2),
              customer("c", 9, 1, (mac(4),), ServiceClass.GOLD, 1 * M, 3),
              customer("d", 1, 3, (), ServiceClass.GOLD, 1 * M, 4)]
    flows, meters = compute_customer_state(states, {1})
    marks = {dict(e.match)["eth_src"]: e.instructions for e in flows[1]
             if dict(e.match).get("eth_type") == 0x0800}
    assert {m: i[1][1][0][2] for m, i in marks.items()} == {mac(1): 34, mac(2): 0, mac(3): 0}
    assert {m: i[1][1][1] for m, i in marks.items()} == {mac(1): ("set_queue", 2),
                                                         mac(2): ("set_queue", 0),
                                                         mac(3): ("set_queue", 0)}
    assert sorted(meters[1]) == [METER_BASE + 1, METER_BASE + 2]  # c is elsewhere, d has no host
    assert 9 not in flows


def test_meter_diff():
    want = {1: meter_for(Sls("a", ServiceClass.GOLD, 8 * M, 0), 1),
            2: meter_for(Sls("b", ServiceClass.GOLD, 2 * M, 0), 2)}
    have = {2: MeterSpec(2, 1000, 100), 3: MeterSpec(3, 1000, 100)}
    add, modify, delete = diff_meters(want, have, allow_delete=True)
    assert [m.meter_id for m in add] == [1] and [m.meter_id for m in modify] == [2]
    assert delete == [3]
    assert diff_meters(want, have, allow_delete=False)[2] == []
    assert diff_meters(want, dict(want), allow_delete=True) == ([], [], [])


def test_incremental_mapping_equals_computing_everything():
    from controller.csm.mapping import CustomerMapping
    states = [customer(f"c{i}", 1 + i % 3, 10 + i, (mac(i),), ServiceClass.GOLD, (i + 1) * M, i)
              for i in range(12)]
    mapping = CustomerMapping()
    mapping.replace_all(states)
    flows, meters = compute_customer_state(states, {1, 2, 3})
    for dpid in (1, 2, 3):
        assert mapping.for_switch(dpid) == (frozenset(flows[dpid]), meters[dpid])
    moved = customer("c4", 3, 99, (mac(4),), ServiceClass.BRONZE, 2 * M, 4)
    mapping.update("c4", moved)
    mapping.update("c5", None)
    rest = [moved if s.customer.customer_id == "c4" else s for s in states
            if s.customer.customer_id != "c5"]
    flows, meters = compute_customer_state(rest, {1, 2, 3})
    for dpid in (1, 2, 3):
        assert mapping.for_switch(dpid) == (frozenset(flows[dpid]), meters[dpid])
    assert len(mapping) == 11
