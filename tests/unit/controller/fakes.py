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
    """Walks a packet through desired flows and links, as the switches would forward it:
    tables from 0, goto_table, set_field and meters (recorded, never dropping); a packet
    follows its first output, further outputs are recorded as copies."""

    def __init__(self, topology: Topology, flows: dict[int, frozenset[FlowEntry]]):
        self.links = {(k.src_dpid, k.src_port): (k.dst_dpid, k.dst_port) for k in topology.links()}
        self.flows = flows
        self.meters_hit: list[tuple[int, int]] = []
        self.copies: list[tuple[int, int]] = []  # extra outputs: (dpid, port)

    def lookup(self, dpid: int, table: int, fields: dict) -> FlowEntry | None:
        best = None
        for entry in self.flows[dpid]:
            if entry.table_id == table and all(fields.get(k) == v for k, v in entry.match):
                if best is None or entry.priority > best.priority:
                    best = entry
        return best

    def deliver(self, dpid: int, fields: dict, max_hops: int = 32) -> tuple:
        """Inject at a switch; returns ('host', dpid, port), ('controller', dpid) or ('drop', dpid).

        `fields` is updated by set_field actions on the way (for example ip_dscp).
        """
        for _ in range(max_hops):
            table, output = 0, None
            while output is None:
                entry = self.lookup(dpid, table, fields)
                if entry is None:
                    return ("drop", dpid)
                goto = None
                for instruction in entry.instructions:
                    if instruction[0] == "meter":
                        self.meters_hit.append((dpid, instruction[1]))
                    elif instruction[0] == "apply_actions":
                        for action in instruction[1]:
                            if action[0] == "set_field":
                                fields[action[1]] = action[2]
                            elif action[0] == "set_queue":
                                fields["queue"] = action[1]
                            elif action[0] == "controller":
                                return ("controller", dpid)
                            elif action[0] == "output":
                                if output is None:
                                    output = action[1]
                                else:
                                    self.copies.append((dpid, action[1]))
                    elif instruction[0] == "goto_table":
                        goto = instruction[1]
                if output is None:
                    if goto is None:
                        return ("drop", dpid)
                    table = goto
            if (dpid, output) not in self.links:
                return ("host", dpid, output)
            dpid = self.links[(dpid, output)][0]
        raise AssertionError(f"forwarding loop for {fields}")
