"""Desired flows per switch: control flows plus shortest-path unicast per host pair (core).

ControlFlows and Forwarding are the desired-state contributors of components CONTROL and
FORWARDING (controller.openflow.desired): control flows on every connected switch, a path
for every host pair across the settled ones.
"""

import networkx as nx

from controller.network.topology import HostInfo, Topology
from controller.openflow.desired import Contribution, DesiredState
from controller.openflow.pipeline import (CLASSIFY_TABLE, CONTROLLER_NO_BUFFER, ETH_TYPE_ARP,
                                          ETH_TYPE_LLDP, FORWARDING_TABLE, PRIORITY, Component,
                                          FlowEntry, cookie_for)
from controller.openflow.reconcile import SwitchView

CONTROL_COOKIE_TABLE_MISS = cookie_for(Component.CONTROL, "table-miss")
CONTROL_COOKIE_TO_FORWARDING = cookie_for(Component.CONTROL, "classify-to-forwarding")
CONTROL_COOKIE_LLDP = cookie_for(Component.CONTROL, "lldp")
CONTROL_COOKIE_ARP = cookie_for(Component.CONTROL, "arp")


def build_control_flows() -> frozenset[FlowEntry]:
    """Flows every switch gets: LLDP and ARP to the controller; in table 0 everything else
    goes on to the forwarding table, whose table-miss sends to the controller.

    ARP goes through the controller, which answers or forwards it to edge ports only: ARP
    is never flooded over inter-switch links, so loops in the topology cannot storm. The
    exception is in compute_forwarding_flows: a known host's ARP about itself follows the
    host pair's path like its other traffic.
    """
    to_controller = (("controller", CONTROLLER_NO_BUFFER),)
    return frozenset({
        FlowEntry.make(CLASSIFY_TABLE, PRIORITY["table_miss"], {}, (), CONTROL_COOKIE_TO_FORWARDING,
                       (("goto_table", FORWARDING_TABLE),)),
        FlowEntry.make(CLASSIFY_TABLE, PRIORITY["lldp_to_controller"],
                       {"eth_type": ETH_TYPE_LLDP}, to_controller, CONTROL_COOKIE_LLDP),
        FlowEntry.make(CLASSIFY_TABLE, PRIORITY["arp_to_controller"],
                       {"eth_type": ETH_TYPE_ARP}, to_controller, CONTROL_COOKIE_ARP),
        FlowEntry.make(FORWARDING_TABLE, PRIORITY["table_miss"], {}, to_controller,
                       CONTROL_COOKIE_TABLE_MISS),
    })


def forwarding_cookie(src_mac: str, dst_mac: str) -> int:
    """Cookie shared by every flow of one host pair's path (one id across switches)."""
    return cookie_for(Component.FORWARDING, f"{src_mac}>{dst_mac}")


def _pair_flow(src: HostInfo, dst: HostInfo, out_port: int) -> FlowEntry:
    return FlowEntry.make(FORWARDING_TABLE, PRIORITY["forwarding"],
                          {"eth_src": src.mac, "eth_dst": dst.mac},
                          (("output", out_port),), forwarding_cookie(src.mac, dst.mac))


def compute_paths(graph: nx.DiGraph) -> dict[int, dict[int, list[int]]]:
    """Switch graph -> shortest path (list of dpids) from every switch to every reachable one.

    Ties are broken the same way every time (BFS over neighbours in dpid order), so the same
    topology always gives the same flows.
    """
    ordered = nx.DiGraph()
    ordered.add_nodes_from(sorted(graph.nodes))
    ordered.add_edges_from(sorted(graph.edges(data=True)))
    return {src: nx.single_source_shortest_path(ordered, src) for src in ordered.nodes}


def arp_cookie(key: str) -> int:
    return cookie_for(Component.FORWARDING, f"arp {key}")


def _arp_flows(graph, hosts, flows, meter_of=None) -> None:
    """ARP that needs no controller goes on to the forwarding table, where the host pair's
    flow takes a unicast one (a neighbour's reachability probe, its reply) to its
    destination, and the table-miss still sends everything else to the controller
    (broadcast requests, unknown destinations). So hosts that already know each other keep
    their ARP entries while no controller answers, during a failover for one.

    At a host's own port only ARP about itself passes: eth_src and the ARP sender fields
    must be the host's learned MAC and one of its addresses, so a host cannot claim another
    one's address this way (that still goes to the controller, which answers it with what
    it knows). On inter-switch ports all ARP passes: only what an edge let in arrives there.

    `meter_of(mac, dpid)`: the meter of the customer whose device the host is, when that
    meter is on the host's switch (csm.mapping.CustomerMapping.meter_of_host). A customer's
    ARP then goes through its meter like the rest of its traffic: a flood of unicast ARP
    cannot take more than its contract."""
    for host in hosts:
        meter = meter_of(host.mac, host.dpid) if meter_of is not None else None
        then = ((("meter", meter),) if meter is not None else ()) + \
            (("goto_table", FORWARDING_TABLE),)
        for address in host.ipv4:
            flows[host.dpid].add(FlowEntry.make(
                CLASSIFY_TABLE, PRIORITY["arp_forward"],
                {"in_port": host.port_no, "eth_type": ETH_TYPE_ARP, "eth_src": host.mac,
                 "arp_sha": host.mac, "arp_spa": address}, (),
                arp_cookie(f"{host.mac} {address}"), then))
    for dpid in flows:
        for port in sorted({data["port"] for _, _, data in graph.out_edges(dpid, data=True)}):
            flows[dpid].add(FlowEntry.make(
                CLASSIFY_TABLE, PRIORITY["arp_forward"], {"in_port": port,
                                                         "eth_type": ETH_TYPE_ARP}, (),
                arp_cookie(f"link {dpid}:{port}"), (("goto_table", FORWARDING_TABLE),)))


def compute_forwarding_flows(topology: Topology, dpids: list[int], meter_of=None
                             ) -> dict[int, set[FlowEntry]]:
    """Unicast flows (match eth_src, eth_dst -> output) for every host pair with a path,
    and the ARP that may take them (_arp_flows).

    Only switches in `dpids` (connected ones) are used. Returns dpid -> flows.
    """
    flows: dict[int, set[FlowEntry]] = {dpid: set() for dpid in dpids}
    graph = topology.graph().subgraph(dpids)
    paths = compute_paths(graph)
    hosts = [h for h in topology.hosts()
             if h.dpid in flows and h.port_no in topology.edge_ports(h.dpid)]
    for src in hosts:
        for dst in hosts:
            if src.mac == dst.mac or (src.dpid, src.port_no) == (dst.dpid, dst.port_no):
                continue
            path = paths.get(src.dpid, {}).get(dst.dpid)
            if path is None:
                continue
            for here, nxt in zip(path, path[1:]):
                flows[here].add(_pair_flow(src, dst, graph[here][nxt]["port"]))
            flows[dst.dpid].add(_pair_flow(src, dst, dst.port_no))
    _arp_flows(graph, hosts, flows, meter_of)
    return flows


def compute_desired_flows(topology: Topology, dpids: list[int]) -> dict[int, frozenset[FlowEntry]]:
    """Control plus forwarding flows for each switch in `dpids` (all of them settled)."""
    control = build_control_flows()
    forwarding = compute_forwarding_flows(topology, dpids)
    return {dpid: control | frozenset(forwarding[dpid]) for dpid in dpids}


class ControlFlows:
    """Contributor: the control flows, on every connected switch (settled or not)."""

    component = Component.CONTROL

    def __init__(self):
        self._flows = build_control_flows()

    def contribute(self, view: SwitchView, earlier: DesiredState | None = None) -> Contribution:
        return Contribution({dpid: self._flows for dpid in view.connected})


class Forwarding:
    """Contributor: host-pair paths across the settled switches (the fabric: in a cluster,
    also those other instances master), recomputed only when the topology, the set of
    settled switches or the customers' meters (`customers`, a
    csm.mapping.CustomerMapping, for the ARP flows of its hosts) changed."""

    component = Component.FORWARDING

    def __init__(self, topology: Topology, customers=None):
        self.topology = topology
        self.customers = customers
        self._cached: tuple[tuple, Contribution] = ((), Contribution())

    def contribute(self, view: SwitchView, earlier: DesiredState | None = None) -> Contribution:
        customers = self.customers
        key = (self.topology.version, view.across(),
               customers.meters_version if customers is not None else 0)
        if self._cached[0] != key:
            flows = compute_forwarding_flows(
                self.topology, list(view.across()),
                customers.meter_of_host if customers is not None else None)
            self._cached = (key, Contribution({dpid: frozenset(f) for dpid, f in flows.items()}))
        return self._cached[1]
