"""The policy engine's Snapshot, built from what the controller knows (core).

From the topology (switch graph with egress ports, hosts with their switch, port and
addresses), the flow statistics (each host pair's table-1 flows and their rates), the port
loads and capacities (controller.monitor.engine.NetworkFacts), the customers' contracts,
the services the probes saw between two addresses, the experience (degraded services,
scores, findings) and the actions in force (a rerouted pair's path is the reroute's):

- every egress with a known load becomes an Element: a link's source port by its
  rootcause link name, a host's port by its access name; its load is what it sends, or
  what the pairs crossing it send where that is more (an egress under congestion sends
  its capacity and drops the rest: the offered load is what the twin needs);
- every host pair with a rate becomes a PairTraffic: its rate is the largest of its table-1
  flows' rates on any switch (the forwarding flow, or the mirror or policy flow above it
  where one takes the traffic); its customer is the sender's, else the receiver's; its
  service is what the probes saw between the two hosts' addresses ('' when no probe saw it).
"""

import dataclasses
from typing import Iterable, Mapping

from controller.monitor.rootcause import access_name, link_name
from controller.network.forwarding import compute_paths
from controller.openflow.pipeline import COOKIE_BASE, COOKIE_BASE_MASK, FORWARDING_TABLE
from controller.policy.model import (REROUTE, Action, Contract, Degradation, Element,
                                     PairTraffic, Snapshot, Suspect)


def contract_of(state, sla) -> Contract:
    """A customer's Contract from its CustomerState and Sla (None: no SLA known, and the
    floor is then the SLS rate itself)."""
    sls = state.sls
    bounds = sla.bounds.get(sls.service_class) if sla is not None else None
    allowed = tuple(c.value for c in sla.allowed_classes) if sla is not None else \
        (sls.service_class.value,)
    return Contract(state.customer_id, sls.service_class.value, sls.rate_bps,
                    bounds.min_bps if bounds else sls.rate_bps, allowed,
                    state.customer.access_dpid, state.meter_id, state.customer.hosts)


def pair_rates(flows: Mapping[int, Iterable]) -> dict[tuple[str, str], float]:
    """(src MAC, dst MAC) -> bit/s: the largest rate of the pair's table-1 flows."""
    out: dict[tuple[str, str], float] = {}
    for views in flows.values():
        for view in views:
            entry = view.entry
            rate = view.bytes_per_second * 8
            if entry.table_id != FORWARDING_TABLE or rate != rate or \
                    entry.cookie & COOKIE_BASE_MASK != COOKIE_BASE:
                continue
            src = dst = None
            for name, value in entry.match:
                if name == "eth_src":
                    src = value
                elif name == "eth_dst":
                    dst = value
            if src is None or dst is None:
                continue
            key = (src, dst)
            if rate > out.get(key, -1.0):
                out[key] = rate
    return out


def build_snapshot(now: float, facts, hosts: Iterable, flows: Mapping[int, Iterable],
                   contracts: Mapping[str, Contract], customer_of_mac: Mapping[str, str],
                   services: Mapping[tuple[str, str], str],
                   degraded: Iterable[Degradation], scores: Mapping[tuple[str, str], float],
                   findings: Iterable, actions: Iterable[Action] = (),
                   queue_packets: int = 64, min_rate_bps: float = 1000.0,
                   classed: frozenset = frozenset(),
                   scope: Iterable[str] | None = None) -> Snapshot:
    """`facts`: NetworkFacts; `hosts`: HostInfo; `services`: (src IP, dst IP) -> service;
    `findings`: rootcause Findings (best first); `classed`: the (switch, port)s whose egress
    has GSB classes by DSCP (csm.egress_interfaces).

    `scope`: element names (the suspects, as the loop gives them): only the pairs that cross
    one of them, or an element of an action in force (a reroute's whole new path), are in
    the snapshot, and their rates are read from the flows of those elements' switches only
    (what enters each egress, before it drops anything). What the engine decides needs no
    more, and on a large network it is a fraction of the flows. Every link is still there
    with its measured load (a reroute looks for room on any of them), and the access ports
    in scope or crossed by the snapshot's pairs. None: every pair, from every switch, and
    every access port (what-if, admission and advice, which ask about any customer)."""
    graph = facts.graph
    hosts = {h.mac: h for h in hosts}
    scope = set(scope) if scope is not None else None
    links: dict[tuple[int, int], tuple[int, str]] = {}
    elements: dict[str, Element] = {}

    def element(name: str, dpid: int, port: int) -> None:
        load = facts.loads.get((dpid, port))
        if load is not None:
            elements[name] = Element(name, dpid, port, load.capacity_bps, load.tx_bps,
                                     load.tx_dropped_per_s, queue_packets,
                                     (dpid, port) in classed)

    for a, b, data in graph.edges(data=True):
        name = link_name(a, data["port"], b)
        links[(a, b)] = (data["port"], name)
        element(name, a, data["port"])
    if scope is None:
        access = {mac: access_name(h.dpid, h.port_no) for mac, h in hosts.items()}
        for mac, host in hosts.items():
            element(access[mac], host.dpid, host.port_no)
    else:
        # the access ports in scope; those of the pairs' receivers are added with them
        access = {}
        for mac, host in hosts.items():
            name = access_name(host.dpid, host.port_no)
            if name in scope:
                access[mac] = name
                element(name, host.dpid, host.port_no)
    paths = getattr(facts, "paths", None) or compute_paths(graph)
    rerouted = {pair: action.intent.path for action in actions
                if action.intent.kind == REROUTE for pair in action.intent.pairs}
    routes: dict[tuple, tuple] = {}   # a path -> its links' names, made once

    def route(path: tuple[int, ...]) -> tuple[str, ...]:
        if path not in routes:
            routes[path] = tuple(links[(x, y)][1] for x, y in zip(path, path[1:])
                                 if (x, y) in links)
        return routes[path]
    if scope is None:
        rates = pair_rates(flows)
    else:
        for action in actions:
            scope.add(action.intent.element)
            if action.intent.kind == REROUTE:
                scope.update(route(tuple(action.intent.path)))
        switches = {elements[name].dpid for name in scope if name in elements}
        rates = pair_rates({dpid: views for dpid, views in flows.items() if dpid in switches})
    classes = {c: contract.service_class for c, contract in contracts.items()}
    receivers_in_scope = frozenset(access) if scope is not None else frozenset()
    crosses: dict[tuple, bool] = {}   # a path -> whether it crosses a link in scope
    between: dict[tuple[int, int], tuple] = {}   # (switch, switch) -> the path, as a tuple

    def path_of(a: int, b: int) -> tuple:
        if (a, b) not in between:
            between[(a, b)] = tuple(paths.get(a, {}).get(b) or ())
        return between[(a, b)]
    pairs = []
    for (src, dst), rate in rates.items():
        if rate < min_rate_bps or src not in hosts or dst not in hosts:
            continue
        a, b = hosts[src], hosts[dst]
        path = rerouted.get((src, dst)) or path_of(a.dpid, b.dpid)
        if not path:
            continue
        if scope is not None:
            if dst not in receivers_in_scope:
                if path not in crosses:
                    crosses[path] = not scope.isdisjoint(route(path))
                if not crosses[path]:
                    continue
            access[dst] = access_name(b.dpid, b.port_no)
        customer = customer_of_mac.get(src) or customer_of_mac.get(dst) or ""
        service = ""
        for s in a.ipv4:
            for d in b.ipv4:
                service = services.get((s, d), service)
        pairs.append(PairTraffic(src, dst, customer, service, classes.get(customer, ""), rate,
                                 path, route(path) + (access[dst],)))
        if scope is not None and access[dst] not in elements:
            element(access[dst], b.dpid, b.port_no)
    pairs.sort()   # by sender and receiver: the same snapshot whatever order flows came in
    # An egress sends at most its capacity: what is offered to it is what the pairs that
    # cross it send (measured where they enter, before any bottleneck), when that is more.
    offered: dict[str, float] = {}
    for pair in pairs:
        for name in pair.elements:
            offered[name] = offered.get(name, 0.0) + pair.rate_bps
    for name, rate in offered.items():
        if name in elements and rate > elements[name].load_bps:
            elements[name] = dataclasses.replace(elements[name], load_bps=rate)
    suspects = tuple(Suspect(f.element, f.score, tuple(f.affected_customers))
                     for f in findings)
    host_ports = {mac: (h.dpid, h.port_no) for mac, h in hosts.items()}
    return Snapshot(now, elements, tuple(pairs), dict(contracts), tuple(degraded), suspects,
                    dict(scores), links, host_ports)
