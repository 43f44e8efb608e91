"""Which links a customer's contract loads, and how much is committed on them (core).

A customer's path is the shortest path from its access switch to the gateway switch (where
the service hosts and the rest of the network are). Gold and Silver maxima are committed on
every inter-switch link of that path; a link's committed total is the sum over all access
switches whose path uses it.
"""

import networkx as nx

from controller.csm.rules import LinkLoad
from controller.network.forwarding import compute_paths
from controller.network.topology import TopologySnapshot


def _graph(snapshot: TopologySnapshot) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(s.dpid for s in snapshot.switches)
    for link in snapshot.links:
        graph.add_edge(link.src_dpid, link.dst_dpid, port=link.src_port)
    return graph


def port_capacity_bps(snapshot: TopologySnapshot, dpid: int, port_no: int,
                      overrides: dict[tuple[int, int], int]) -> int | None:
    """A port's capacity: the configured override, else the speed the switch reports."""
    if (dpid, port_no) in overrides:
        return overrides[(dpid, port_no)]
    switch = snapshot.switch(dpid)
    for port in switch.ports if switch else ():
        if port.port_no == port_no and port.curr_speed_kbps:
            return port.curr_speed_kbps * 1000
    return None


def path_loads(snapshot: TopologySnapshot, access_dpid: int, gateway_dpid: int,
               committed_by_access: dict[int, int], overrides: dict[tuple[int, int], int]
               ) -> list[LinkLoad]:
    """LinkLoads of the inter-switch links from access_dpid to gateway_dpid (both ways)."""
    graph = _graph(snapshot)
    paths = compute_paths(graph)
    if access_dpid not in paths or gateway_dpid not in paths.get(access_dpid, {}):
        return []
    def links_of(src: int) -> list[tuple[int, int]]:
        hops = paths.get(src, {}).get(gateway_dpid)
        if hops is None:
            return []
        pairs = list(zip(hops, hops[1:]))
        return pairs + [(b, a) for a, b in pairs]
    committed: dict[tuple[int, int], int] = {}
    for access, total in committed_by_access.items():
        for pair in links_of(access):
            committed[pair] = committed.get(pair, 0) + total
    loads = []
    for a, b in links_of(access_dpid):
        port = graph[a][b]["port"]
        capacity = port_capacity_bps(snapshot, a, port, overrides)
        if capacity is not None:
            loads.append(LinkLoad(f"{a:016x}:{port}->{b:016x}", capacity, committed.get((a, b), 0)))
    return loads
