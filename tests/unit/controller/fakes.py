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
        topology.set_ports(dpid, [PortInfo(p, f"s{dpid}-eth{p}", f"0a:00:00:00:{dpid:02x}:{p:02x}")
                                  for p in range(1, count + 1)])
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

        `fields` is updated by set_field actions on the way (for example ip_dscp), and
        in_port by each link it crosses (give the first one in `fields`).
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
            dpid, fields["in_port"] = self.links[(dpid, output)]
        raise AssertionError(f"forwarding loop for {fields}")


def desired_flows(topology: Topology, dpids, *contributors) -> dict[int, frozenset[FlowEntry]]:
    """What each switch in `dpids` (all settled) should hold: control and forwarding flows,
    then the given contributors (controller.openflow.desired), as the app assembles them."""
    from controller.network.forwarding import ControlFlows, Forwarding
    from controller.openflow.desired import assemble
    from controller.openflow.reconcile import SwitchView
    view = SwitchView(frozenset(dpids), tuple(sorted(dpids)))
    state = assemble(view, (ControlFlows(), Forwarding(topology), *contributors))
    return {dpid: state.flows(dpid) for dpid in dpids}


class FakeSwitch:
    """An OpenFlow 1.3 switch's flow and meter tables, as Open vSwitch keeps them, driven by
    reconciliation changes (controller.openflow.reconcile):

    - a flow add overwrites the flow with its table, priority and match; a strict delete
      removes exactly it; a flow whose meter does not exist is refused (METER_NOT_FOUND
      in OpenFlow terms);
    - a meter add of an existing id is refused (METER_EXISTS), a modify or delete of a
      missing one too (UNKNOWN_METER); deleting a meter removes the flows that use it.

    Refusals are recorded in `errors` as (xid, what); `foreign` flows (other cookies) and
    meters below METER_BASE are someone else's and reported like any other.
    """

    def __init__(self, dpid: int):
        self.dpid = dpid
        self.flows: dict[tuple, FlowEntry] = {}
        self.meters: dict = {}
        self.errors: list[tuple[int, str]] = []
        self._xid = 0

    def next_xid(self) -> int:
        self._xid += 1
        return self._xid

    def table(self) -> frozenset[FlowEntry]:
        return frozenset(self.flows.values())

    def lose_meter(self, meter_id: int) -> None:
        """The meter goes away behind the controller's back, and its flows with it."""
        from controller.openflow.pipeline import meters_used
        del self.meters[meter_id]
        self.flows = {k: e for k, e in self.flows.items() if meter_id not in meters_used(e)}

    def apply(self, xid: int, item) -> None:
        from controller.openflow.pipeline import meters_used
        from controller.openflow.reconcile import FlowMod, MeterMod
        if isinstance(item, FlowMod):
            key = (item.entry.table_id, item.entry.priority, item.entry.match)
            if item.command == "add":
                missing = [m for m in meters_used(item.entry) if m not in self.meters]
                if missing:
                    self.errors.append((xid, f"meter {missing[0]} not found"))
                    return
                self.flows[key] = item.entry
            elif self.flows.get(key) == item.entry:
                del self.flows[key]
        elif isinstance(item, MeterMod):
            meter_id = item.meter.meter_id
            if item.command == "add":
                if meter_id in self.meters:
                    self.errors.append((xid, f"meter {meter_id} exists"))
                    return
                self.meters[meter_id] = item.meter
            elif meter_id not in self.meters:
                self.errors.append((xid, f"meter {meter_id} unknown"))
            elif item.command == "modify":
                self.meters[meter_id] = item.meter
            else:
                del self.meters[meter_id]
                self.flows = {k: e for k, e in self.flows.items()
                              if meter_id not in meters_used(e)}
