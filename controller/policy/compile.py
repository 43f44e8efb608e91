"""Actions in force -> flows and meters of component POLICY (core).

PolicyFlows is the desired-state contributor of component POLICY
(controller.openflow.desired); it runs after the customer mapping and reads the mapping's
flows, so that what it replaces keeps what the contract gives:

- meter: on the switch where the competitor's pairs enter, a table-0 flow per pair
  (IPv4, eth_src, eth_dst) above the customer's own classify flow, with the same marking
  and queue as that flow (none for traffic a customer receives) and the action's meter
  instead of the customer's: the pair's traffic is held to the meter's rate;
- priority: the same flow per affected pair with the DSCP and queue of the class the action
  gives and the customer's own meter kept, so the SLS rate still holds;
- reroute: a table-1 flow per pair on every switch of the new path, above the pair's
  forwarding flow, out of the port towards the next switch (the last: towards the host).
  On the probe's switch this flow also stands above the pair's mirror copies.

Linux traffic control (controller.csm.queues.plan_traffic_control, the one tc builder)
takes the policy's actions too: committed_with_policy() adds a re-marking's rate to what
its class is guaranteed on the egress classes (otherwise the class would be guaranteed only
what its customers' SLSs commit, and traffic re-marked into it would borrow behind the
other classes' guarantees and be dropped); and shaped_rate() lowers a configured edge host's shaping from
the SLS rate to the rate of a meter in force on traffic that host sends, so that the
customer's own TCP meets the meter smoothly instead of being dropped by it.

Meter ids of actions are POLICY_METER_BASE + the action id, above every customer's meter
(controller.csm.mapping.customer_meter_id). Two actions that want the same flow (same
table, priority and match) cannot both have it: the older action's flow is kept and the
contributor says which action lost (`conflicts`).
"""

from typing import Iterable, Mapping

from controller.csm.mapping import meter_at
from controller.csm.model import ServiceClass
from controller.openflow.desired import Contribution, DesiredState
from controller.openflow.pipeline import (CLASSIFY_TABLE, ETH_TYPE_IP, FORWARDING_TABLE,
                                          PRIORITY, Component, FlowEntry, MeterSpec,
                                          cookie_for)
from controller.openflow.reconcile import SwitchView
from controller.policy.model import DSCP, METER, PRIORITY as REMARK, QUEUE, REROUTE, Action

POLICY_METER_BASE = 0x4000_0000


def policy_meter_id(action_id: int) -> int:
    return POLICY_METER_BASE + action_id


def _classify_flow(csm_flows: Iterable[FlowEntry], src_mac: str) -> FlowEntry | None:
    """The customer mapping's IPv4 classify flow of a device, if the device is a customer's."""
    want = (("eth_src", src_mac.lower()), ("eth_type", ETH_TYPE_IP))
    for entry in csm_flows:
        if entry.table_id == CLASSIFY_TABLE and entry.match == want:
            return entry
    return None


def _parts(entry: FlowEntry | None) -> tuple[tuple, tuple[int, ...]]:
    """(apply actions, meter ids) of a classify flow (none without one)."""
    if entry is None:
        return (), ()
    actions = next((i[1] for i in entry.instructions if i[0] == "apply_actions"), ())
    meters = tuple(i[1] for i in entry.instructions if i[0] == "meter")
    return actions, meters


def _remarked(actions: tuple, service_class: str) -> tuple:
    kept = tuple(a for a in actions if a[0] != "set_queue"
                 and not (a[0] == "set_field" and a[1] == "ip_dscp"))
    return kept + (("set_field", "ip_dscp", DSCP[service_class]),
                   ("set_queue", QUEUE[service_class]))


def policy_flows(actions: Iterable[Action], csm_flows: Mapping[int, Iterable[FlowEntry]]
                 ) -> tuple[dict[int, set[FlowEntry]], dict[int, dict[int, MeterSpec]],
                            list[str]]:
    """(flows per switch, meters per switch, conflicts) for the actions in force."""
    flows: dict[int, dict[tuple, FlowEntry]] = {}
    meters: dict[int, dict[int, MeterSpec]] = {}
    conflicts: list[str] = []

    def add(dpid: int, entry: FlowEntry, action: Action) -> None:
        key = (entry.table_id, entry.priority, entry.match)
        mine = flows.setdefault(dpid, {})
        if key in mine and mine[key] != entry:
            conflicts.append(f"action {action.action_id} ({action.intent.kind}) wants a flow "
                             f"that an older action holds on switch {dpid:016x}: {dict(key[2])}")
            return
        mine[key] = entry

    for action in sorted(actions, key=lambda a: a.action_id):
        intent = action.intent
        if intent.kind in (METER, REMARK):
            dpid = intent.switch
            csm = list(csm_flows.get(dpid, ()))
            meter_id = policy_meter_id(action.action_id)
            if intent.kind == METER:
                meters.setdefault(dpid, {})[meter_id] = meter_at(meter_id, intent.rate_bps)
            for src, dst in intent.pairs:
                base_actions, base_meters = _parts(_classify_flow(csm, src))
                if intent.kind == METER:
                    acts, use = base_actions, (meter_id,)
                else:
                    acts, use = _remarked(base_actions, intent.service_class), base_meters
                add(dpid, FlowEntry.make(
                    CLASSIFY_TABLE, PRIORITY["policy_mark"],
                    {"eth_type": ETH_TYPE_IP, "eth_src": src, "eth_dst": dst}, acts,
                    cookie_for(Component.POLICY, f"{intent.kind}:{src}>{dst}"),
                    tuple(("meter", m) for m in use) + (("goto_table", FORWARDING_TABLE),)),
                    action)
        elif intent.kind == REROUTE:
            for src, dst in intent.pairs:
                for dpid, port in intent.hops:
                    add(dpid, FlowEntry.make(
                        FORWARDING_TABLE, PRIORITY["policy_route"],
                        {"eth_src": src, "eth_dst": dst}, (("output", port),),
                        cookie_for(Component.POLICY, f"reroute:{src}>{dst}")), action)
    return ({dpid: set(entries.values()) for dpid, entries in flows.items()}, meters,
            conflicts)


class PolicyFlows:
    """Contributor: the flows and meters of the actions in force, on settled switches.

    An action reaches the network only when every switch it needs has settled (here, or in
    the fabric another instance masters): half a reroute would send the pair where no flow
    of it waits."""

    component = Component.POLICY

    def __init__(self):
        self.actions: tuple[Action, ...] = ()
        self.conflicts: list[str] = []

    def contribute(self, view: SwitchView, earlier: DesiredState) -> Contribution:
        csm = earlier.part(Component.CSM).flows
        ready = [a for a in self.actions if set(_switches(a)) <= set(view.across())]
        flows, meters, self.conflicts = policy_flows(ready, csm)
        return Contribution({d: frozenset(f) for d, f in flows.items() if f}, meters)


def _switches(action: Action) -> tuple[int, ...]:
    if action.intent.kind == REROUTE:
        return tuple(dpid for dpid, _ in action.intent.hops)
    return (action.intent.switch,)


def shaped_rate(customer_id: str, sls_rate_bps: int | None, hosts: Iterable[str],
                actions: Iterable[Action]) -> int | None:
    """What a customer's edge host is shaped to: its SLS rate, or the lowest rate of a
    policy meter in force on pairs one of its hosts sends, when that is lower. None (no
    shaping) when the customer has no SLS."""
    if sls_rate_bps is None:
        return None
    mine = {h.lower() for h in hosts}
    rates = [a.intent.rate_bps for a in actions
             if a.intent.kind == METER and a.intent.customer_id == customer_id and
             a.intent.rate_bps and any(src.lower() in mine for src, _ in a.intent.pairs)]
    return min([sls_rate_bps] + rates)


# The rate of a re-marking is measured under congestion, as a mean over a second: the
# guarantee it adds has room for the streams' bursts and what the measurement missed.
REMARK_HEADROOM = 1.25


def committed_with_policy(committed_bps: Mapping, actions: Iterable[Action]) -> dict:
    """What each class is guaranteed on the egress classes: the customers' committed SLS
    rates (ServiceClass -> bit/s) plus REMARK_HEADROOM times the rate of every re-marking
    in force into it."""
    out = dict(committed_bps)
    for action in actions:
        intent = action.intent
        if intent.kind == REMARK and intent.rate_bps:
            klass = ServiceClass(intent.service_class)
            out[klass] = out.get(klass, 0) + int(intent.rate_bps * REMARK_HEADROOM)
    return out
