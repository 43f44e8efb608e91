"""Root cause on built topologies: one congested link, two, one customer's access line, none.

The access network: switch 1 (core, where the services are) - switches 2 and 3
(aggregation) - access switches 4, 5 under 2 and 6 under 3.
"""

from controller.monitor.rootcause import (PortLoad, access_name, customer_paths, find_causes,
                                          link_name)

from tests.unit.controller.fakes import build_topology

LINKS = [(1, 1, 2, 1), (1, 2, 3, 1), (2, 2, 4, 1), (2, 3, 5, 1), (3, 2, 6, 1)]
CUSTOMERS = {"a": (4, 5), "b": (4, 6), "c": (5, 5), "d": (6, 5), "e": (6, 6)}


def paths():
    graph = build_topology({1: 4, 2: 4, 3: 4, 4: 8, 5: 8, 6: 8}, LINKS).graph()
    return customer_paths(graph, CUSTOMERS, {c: [1] for c in CUSTOMERS})


def loads(**busy):
    """Ports with their load; every other port idle at 100 Mbit/s capacity."""
    out = {}
    for dpid in range(1, 7):
        for port in range(1, 9):
            out[(dpid, port)] = PortLoad(1e6, 100e6)
    for key, value in busy.items():
        dpid, port = (int(x) for x in key[1:].split("_"))
        out[(dpid, port)] = value
    return out


def test_one_congested_aggregation_link_is_named_with_the_customers_behind_it():
    # a, b (on 4) and c (on 5) are behind 1->2; d, e behind 1->3
    findings = find_causes(paths(), {"a": ["voice"], "b": ["iptv"], "c": ["voice"]},
                           ["d", "e"], loads(p1_1=PortLoad(98e6, 100e6, 40.0)), 100.0)
    top = findings[0]
    assert top.element == link_name(1, 1, 2)
    assert top.affected_customers == ("a", "b", "c") and top.services == ("iptv", "voice")
    assert top.inputs["utilisation"] == 0.98 and any("dropped" in e for e in top.evidence)
    assert all(f.element != link_name(1, 2, 3) for f in findings)  # the healthy side


def test_two_congested_links_are_both_found():
    # 2->4 (behind it a and b) and 3->6 (d and e) are full; c, on 5, is fine
    findings = find_causes(paths(), {"a": ["voice"], "b": ["voice"], "d": ["voice"],
                                     "e": ["iptv"]}, ["c"],
                           loads(p2_2=PortLoad(99e6, 100e6), p3_2=PortLoad(99e6, 100e6)), 1.0)
    names = [f.element for f in findings]
    assert set(names[:2]) == {link_name(2, 2, 4), link_name(3, 2, 6)}
    by_name = {f.element: f for f in findings}
    assert by_name[link_name(2, 2, 4)].affected_customers == ("a", "b")
    assert by_name[link_name(3, 2, 6)].affected_customers == ("d", "e")


def test_a_congested_access_line_points_at_that_customers_port_only():
    findings = find_causes(paths(), {"a": ["voice"]}, ["b", "c", "d", "e"],
                           loads(p4_5=PortLoad(20e6, 20e6, 10.0)), 1.0)
    assert findings[0].element == access_name(4, 5)
    assert findings[0].affected_customers == ("a",)
    assert findings[0].score > findings[1].score if len(findings) > 1 else True


def test_no_degraded_customer_no_finding_and_a_cause_everyone_shares_is_no_cause():
    assert find_causes(paths(), {}, list(CUSTOMERS), loads(), 1.0) == []
    # two degraded customers on different branches: nothing they share but the core switch,
    # which every healthy customer crosses too
    findings = find_causes(paths(), {"a": ["voice"], "e": ["voice"]}, ["b", "c", "d"],
                           loads(), 1.0)
    assert all(f.element != "switch 0000000000000001" for f in findings)
    assert all(f.inputs["coverage"] < 1 or f.inputs["exposure"] < 0.5 for f in findings)


def test_without_healthy_customers_the_busy_link_outranks_idle_ones_everybody_crosses():
    # everyone degraded (nobody healthy to exclude anything): a, b, c behind the full 1->2,
    # d and e behind 1->3, which is idle. On coverage alone 1->2 ties with the idle 2->1 and
    # 2->4 of the same customers; the statistics put it first and leave the idle ones out.
    # The core switch every degraded path meets stays a suspect (nothing speaks against it).
    findings = find_causes(paths(), {c: ["voice"] for c in CUSTOMERS}, [],
                           loads(p1_1=PortLoad(98e6, 100e6)), 1.0)
    assert [f.element for f in findings] == ["switch 0000000000000001", link_name(1, 1, 2)]
    assert findings[1].affected_customers == ("a", "b", "c")
    calm = find_causes(paths(), {c: ["voice"] for c in ("a", "b", "c")}, [], loads(), 1.0)
    idle = next(f for f in calm if f.element == link_name(1, 1, 2))
    assert idle.score == 0.7 and any("speak against" in e for e in idle.evidence)
