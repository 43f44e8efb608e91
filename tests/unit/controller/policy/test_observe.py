"""The snapshot from what the controller knows: elements, pairs with their paths, customers,
services and offered loads."""

import networkx as nx

from controller.csm.model import ClassBounds, Customer, CustomerState, ServiceClass, Sla, Sls
from controller.events import FlowView
from controller.monitor.engine import NetworkFacts
from controller.monitor.rootcause import Finding, PortLoad, access_name, link_name
from controller.network.topology import HostInfo
from controller.openflow.pipeline import FORWARDING_TABLE, Component, FlowEntry, cookie_for
from controller.policy.model import Contract, Degradation, Suspect
from controller.policy.observe import build_snapshot, contract_of, pair_rates

SERVER, PHONE, PC = "00:00:00:00:00:09", "00:00:00:00:00:01", "00:00:00:00:00:02"


def flow(dpid, src, dst, rate_bps, component=Component.FORWARDING, port=2):
    entry = FlowEntry.make(FORWARDING_TABLE, 1000, {"eth_src": src, "eth_dst": dst},
                           (("output", port),), cookie_for(component, f"{src}>{dst}"))
    return FlowView(dpid, entry, 0, 0, 1.0, rate_bps / 8)


def world():
    graph = nx.DiGraph()
    graph.add_edge(1, 2, port=2)
    graph.add_edge(2, 1, port=1)
    loads = {(1, 2): PortLoad(30e6, 30e6, 50.0), (2, 1): PortLoad(1e5, 30e6),
             (2, 5): PortLoad(0.1e6, 100e6), (2, 6): PortLoad(29e6, 100e6)}
    facts = NetworkFacts(graph, {"10.0.0.9": 1, "10.0.0.1": 2, "10.0.0.2": 2}, loads)
    hosts = (HostInfo(SERVER, 1, 10, ("10.0.0.9",)), HostInfo(PHONE, 2, 5, ("10.0.0.1",)),
             HostInfo(PC, 2, 6, ("10.0.0.2",)))
    flows = {1: (flow(1, SERVER, PHONE, 0.1e6), flow(1, SERVER, PC, 40e6),
                 flow(1, PHONE, SERVER, 500.0)),
             2: (flow(2, SERVER, PHONE, 0.1e6), flow(2, SERVER, PC, 29e6))}
    contracts = {"a": Contract("a", "gold", 10 ** 7, 10 ** 6, ("gold",), 2, 0x10001, (PHONE,)),
                 "b": Contract("b", "bronze", 4 * 10 ** 7, 2 * 10 ** 6, ("bronze",), 2,
                               0x10002, (PC,))}
    return facts, hosts, flows, contracts


def test_pairs_get_their_customer_service_class_rate_and_path():
    facts, hosts, flows, contracts = world()
    finding = Finding(link_name(1, 2, 2), 1.0, (), ("a",), ("voice",), 0.0, {})
    snap = build_snapshot(100.0, facts, hosts, flows, contracts, {PHONE: "a", PC: "b"},
                          {("10.0.0.9", "10.0.0.1"): "voice"},
                          [Degradation("a", "voice", "gold", 90.0, 2.9, 4.03)],
                          {("a", "voice"): 2.9}, [finding])
    pairs = {p.key: p for p in snap.pairs}
    assert set(pairs) == {(SERVER, PHONE), (SERVER, PC)}   # 500 bit/s is below the floor
    voice, bulk = pairs[(SERVER, PHONE)], pairs[(SERVER, PC)]
    assert (voice.customer_id, voice.service, voice.service_class) == ("a", "voice", "gold")
    assert (bulk.customer_id, bulk.service, bulk.service_class) == ("b", "", "bronze")
    # the largest rate of the pair's flows: where it enters, before the bottleneck
    assert bulk.rate_bps == 40e6 and bulk.path == (1, 2)
    assert bulk.elements == (link_name(1, 2, 2), access_name(2, 6))
    assert snap.suspects[0].element == link_name(1, 2, 2)
    assert snap.links[(1, 2)] == (2, link_name(1, 2, 2))
    assert snap.host_ports[PC] == (2, 6)


def test_an_egress_at_capacity_is_loaded_with_what_is_offered_to_it():
    facts, hosts, flows, contracts = world()
    snap = build_snapshot(100.0, facts, hosts, flows, contracts, {PHONE: "a", PC: "b"}, {},
                          [], {}, [])
    link = snap.elements[link_name(1, 2, 2)]
    assert link.load_bps == 40.1e6 and link.capacity_bps == 30e6
    assert link.dropped_per_s == 50.0
    # an idle one keeps what it sends
    assert snap.elements[access_name(2, 5)].load_bps == 0.1e6


def test_pair_rates_take_every_cems_table_1_flow_and_no_other():
    views = {1: (flow(1, SERVER, PC, 8e6), flow(1, SERVER, PC, 9e6, Component.MIRROR)),
             2: (FlowView(2, FlowEntry.make(FORWARDING_TABLE, 5, {"eth_src": SERVER,
                                                                  "eth_dst": PC},
                                            (("output", 1),), 0x1234), 0, 0, 1.0, 1e9),)}
    assert pair_rates(views) == {(SERVER, PC): 9e6}


def test_ports_with_egress_classes_are_marked_so():
    facts, hosts, flows, contracts = world()
    snap = build_snapshot(100.0, facts, hosts, flows, contracts, {}, {}, [], {}, [],
                          classed=frozenset({(1, 2)}))
    assert snap.elements[link_name(1, 2, 2)].has_classes
    assert not snap.elements[link_name(2, 1, 1)].has_classes


def test_a_contract_takes_the_floor_of_its_class_and_the_classes_its_sla_allows():
    state = CustomerState(Customer("b", "B", access_dpid=2, hosts=(PC,)),
                          Sls("b", ServiceClass.BRONZE, 30_000_000, 0.0), 0x10002)
    sla = Sla("b", "gsb-economy", {ServiceClass.BRONZE: ClassBounds(2_000_000, 40_000_000),
                                   ServiceClass.SILVER: ClassBounds(1_000_000, 10_000_000)})
    contract = contract_of(state, sla)
    assert (contract.service_class, contract.sls_rate_bps, contract.sla_min_bps) == \
        ("bronze", 30_000_000, 2_000_000)
    assert contract.allowed_classes == ("silver", "bronze") and contract.hosts == (PC,)
    assert contract_of(state, None).sla_min_bps == 30_000_000   # no SLA: the SLS is the floor


def test_a_scoped_snapshot_holds_the_pairs_across_the_suspects_and_the_actions_only():
    import dataclasses
    from controller.policy.engine import PolicyConfig, PolicyMemory, decide
    facts, hosts, flows, contracts = world()
    owners = {PHONE: "a", PC: "b"}
    args = ({("10.0.0.9", "10.0.0.1"): "voice"},
            [Degradation("a", "voice", "gold", 90.0, 2.9, 4.03)], {("a", "voice"): 2.9},
            [Finding(access_name(2, 5), 1.0, (), ("a",), ("voice",), 0.0, {})])
    full = build_snapshot(100.0, facts, hosts, flows, contracts, owners, *args)
    scoped = build_snapshot(100.0, facts, hosts, flows, contracts, owners, *args,
                            scope=[access_name(2, 5)])
    # the phone's port: the voice to it only, its rate read on switch 2; every link kept,
    # of the access ports the one in scope
    assert [p.key for p in scoped.pairs] == [(SERVER, PHONE)]
    assert set(scoped.elements) == set(full.elements) - {access_name(2, 6)}
    assert scoped.pairs[0] == next(p for p in full.pairs if p.key == (SERVER, PHONE))
    link = build_snapshot(100.0, facts, hosts, flows, contracts, owners, *args,
                          scope=[link_name(1, 2, 2)])
    assert {p.key: p.rate_bps for p in link.pairs} == {(SERVER, PHONE): 0.1e6,
                                                       (SERVER, PC): 40e6}
    # an action in force keeps its pairs in the snapshot, whatever the suspects are
    congested = dataclasses.replace(full, suspects=(Suspect(link_name(1, 2, 2), 1.0, ("a",)),))
    acted = decide(congested, PolicyMemory(), PolicyConfig()).memory.actions
    assert acted and acted[0].intent.element == link_name(1, 2, 2)
    kept = build_snapshot(100.0, facts, hosts, flows, contracts, owners, *args,
                          actions=acted, scope=[])
    assert {p.key for p in kept.pairs} == {(SERVER, PHONE), (SERVER, PC)}
    assert build_snapshot(100.0, facts, hosts, flows, contracts, owners, *args,
                          scope=[]).pairs == ()
