"""Fakes for unit tests: a topology builder and a flow-table walker (what would the switch do)."""

from controller.network.topology import LinkKey, PortInfo, Topology
from controller.openflow.pipeline import FlowEntry


def mac(n: int) -> str:
    return f"00:00:00:00:00:{n:02x}"


def build_topology(switch_ports: dict[int, int], links: list[tuple[int, int, int, int]],
                   now: float = 0.0) -> Topology:
    """switch_ports: dpid -> number of ports; links: (dpid, port, dpid, port), both directions."""
    topology = Topology()
    for dpid, count in switch_ports.items():
        topology.add_switch(dpid, now)
        topology.set_ports(dpid, [PortInfo(p, f"s{dpid}-eth{p}", mac(p)) for p in range(1, count + 1)])
    for a, pa, b, pb in links:
        topology.observe_link(LinkKey(a, pa, b, pb), now)
        topology.observe_link(LinkKey(b, pb, a, pa), now)
    return topology


class FakeNetwork:
    """Walks a packet through desired flows and links, as the switches would forward it."""

    def __init__(self, topology: Topology, flows: dict[int, frozenset[FlowEntry]]):
        self.links = {(k.src_dpid, k.src_port): (k.dst_dpid, k.dst_port) for k in topology.links()}
        self.flows = flows

    def lookup(self, dpid: int, fields: dict) -> FlowEntry | None:
        best = None
        for entry in self.flows[dpid]:
            if all(fields.get(k) == v for k, v in entry.match):
                if best is None or entry.priority > best.priority:
                    best = entry
        return best

    def deliver(self, dpid: int, fields: dict, max_hops: int = 32) -> tuple:
        """Inject at a switch; returns ('host', dpid, port), ('controller', dpid) or ('drop', dpid)."""
        for _ in range(max_hops):
            entry = self.lookup(dpid, fields)
            if entry is None or not entry.instructions:
                return ("drop", dpid)
            actions = dict((a[0], a[1:]) for a in entry.instructions[0][1])
            if "controller" in actions:
                return ("controller", dpid)
            port = actions["output"][0]
            if (dpid, port) not in self.links:
                return ("host", dpid, port)
            dpid = self.links[(dpid, port)][0]
        raise AssertionError(f"forwarding loop for {fields}")
