"""Reconciliation as a pure core: the app's part is played by a small harness that assembles
the desired state, sends each plan to fake switches that keep tables as Open vSwitch does,
and answers flow-stats and meter-config requests from those tables; packets are then walked
through what the switches really hold."""

import pytest

from controller.csm.mapping import CustomerMapping, customer_meter_id
from controller.csm.model import Customer, CustomerState, ServiceClass, Sls
from controller.network.forwarding import ControlFlows, Forwarding, build_control_flows
from controller.openflow.desired import Contribution, DesiredStateError, assemble
from controller.openflow.pipeline import (FORWARDING_TABLE, METER_BASE, Component, FlowEntry,
                                          MeterSpec, cookie_for, meters_used)
from controller.openflow.reconcile import (FlowMod, MeterMod, Reconciler, StateRequest,
                                           SwitchView)

from tests.unit.controller.fakes import FakeNetwork, FakeSwitch, build_topology, mac

M = 1_000_000
SETTLE_S = 2.5
FOREIGN = FlowEntry.make(FORWARDING_TABLE, 5, {"eth_dst": mac(0x97)}, (), 0x1234)
STALE = FlowEntry.make(FORWARDING_TABLE, 1000, {"eth_src": mac(0x99), "eth_dst": mac(0x98)},
                       (), cookie_for(Component.FORWARDING, "gone"))


class Harness:
    """The app's part, without os-ken: events in, plans out, sent to FakeSwitches."""

    def __init__(self, topology, *contributors, switches=None):
        self.topology = topology
        self.reconciler = Reconciler(SETTLE_S)
        self.switches: dict[int, FakeSwitch] = switches if switches is not None else {}
        customers = next((c for c in contributors if isinstance(c, CustomerMapping)), None)
        self.contributors = (ControlFlows(), Forwarding(topology, customers), *contributors)
        self.sent: list = []  # (dpid, xid, item) in the order they left

    def connect(self, dpid: int, now: float) -> None:
        self.switches.setdefault(dpid, FakeSwitch(dpid))  # a switch keeps its tables
        self.reconciler.connect(dpid, now)
        self.converge(now, only=[dpid])

    def converge(self, now: float, only=None) -> list:
        view = self.reconciler.view(now)
        desired = assemble(view, self.contributors)
        plans = self.reconciler.converge(view, desired.flows, desired.meters, only)
        for plan in plans:
            self.send(plan.dpid, plan.changes)
        return plans

    def send(self, dpid: int, items) -> list[int]:
        ledger, switch = self.reconciler.ledger(dpid), self.switches[dpid]
        xids = []
        for item in items:
            xid = switch.next_xid()
            ledger.sent(xid, item)
            self.sent.append((dpid, xid, item))
            if isinstance(item, (FlowMod, MeterMod)):
                switch.apply(xid, item)
            xids.append(xid)
        return xids

    def ask(self, dpid: int, kind: str):
        """Send a state request; returns (xid, the switch's answer as of now)."""
        (xid,) = self.send(dpid, [StateRequest(kind)])
        switch = self.switches[dpid]
        if kind == "flows":  # the request matches cems cookies only
            return xid, [e for e in switch.table() if e.component is not None]
        return xid, list(switch.meters.values())

    def answer(self, dpid: int, xid: int, kind: str, body):
        ledger = self.reconciler.ledger(dpid)
        return (ledger.flows_reported(xid, body) if kind == "flows"
                else ledger.meters_reported(xid, body))

    def poll(self, dpid: int, now: float):
        """Ask for meters and flows (the app's order), get the answers, converge if the app
        would; returns the (meters, flows) reports."""
        asked = [(kind, *self.ask(dpid, kind)) for kind in ("meters", "flows")]
        reports = []
        for kind, xid, body in asked:  # both answers reflect the switch when it was asked
            report = self.answer(dpid, xid, kind, body)
            reports.append(report)
            if report is not None and (kind == "flows" or report.first or report.differs):
                self.converge(now)
        return reports

    def desired(self, now: float):
        view = self.reconciler.view(now)
        return assemble(view, self.contributors)


def two_switches():
    topology = build_topology({1: 3, 2: 3}, [(1, 3, 2, 3)])
    topology.learn_host(mac(1), 1, 1, "10.0.0.1")
    topology.learn_host(mac(2), 2, 1, "10.0.0.2")
    return topology


def alice(rate_bps=8 * M, service_class=ServiceClass.GOLD, index=1) -> CustomerState:
    return CustomerState(Customer("alice", "Alice", access_dpid=1, access_port=1,
                                  hosts=(mac(1),)),
                         Sls("alice", service_class, rate_bps, 0.0), customer_meter_id(index))


def start(harness: Harness, now: float = 0.0) -> float:
    """Connect both switches, answer their first requests, let them settle."""
    for dpid in (1, 2):
        harness.connect(dpid, now)
        harness.poll(dpid, now)
    later = now + SETTLE_S
    assert harness.reconciler.newly_settled(later) == [1, 2]
    harness.converge(later)
    return later


def cems_table(switch: FakeSwitch) -> frozenset[FlowEntry]:
    return frozenset(e for e in switch.table() if e.component is not None)


# -- connect ------------------------------------------------------------------------------
def test_a_new_switch_gets_control_flows_then_exactly_the_desired_state_once_settled():
    harness = Harness(two_switches())
    harness.connect(1, 0.0)
    assert cems_table(harness.switches[1]) == build_control_flows()  # not settled: control only
    harness.connect(2, 0.0)
    now = SETTLE_S
    assert harness.reconciler.ready() == frozenset()
    assert harness.reconciler.newly_settled(now) == [1, 2]
    assert harness.reconciler.newly_settled(now) == []  # once
    harness.converge(now)
    desired = harness.desired(now)
    for dpid in (1, 2):
        assert harness.switches[dpid].table() == desired.flows(dpid)
    net = FakeNetwork(harness.topology, {d: s.table() for d, s in harness.switches.items()})
    assert net.deliver(1, {"eth_src": mac(1), "eth_dst": mac(2)}) == ("host", 2, 1)
    assert net.deliver(2, {"eth_src": mac(2), "eth_dst": mac(1)}) == ("host", 1, 1)
    # the same desired state again changes nothing
    assert not any(harness.converge(now))
    assert harness.reconciler.ready() == frozenset({1, 2})


def test_an_unsettled_switch_keeps_what_it_has():
    harness = Harness(two_switches())
    harness.switches[1] = FakeSwitch(1)
    harness.switches[1].flows[(STALE.table_id, STALE.priority, STALE.match)] = STALE
    harness.connect(1, 0.0)
    harness.poll(1, 0.0)  # the switch says it holds STALE: believed, not removed yet
    assert STALE in harness.switches[1].table()
    harness.reconciler.newly_settled(SETTLE_S)
    harness.converge(SETTLE_S)
    assert STALE not in harness.switches[1].table()  # settled: only what is desired stays


# -- reconnect and restart ----------------------------------------------------------------
def tamper(switch: FakeSwitch) -> FlowEntry:
    """Remove one desired forwarding flow, add a stale cems flow and a foreign one."""
    gone = next(e for e in switch.table() if e.component == Component.FORWARDING)
    del switch.flows[(gone.table_id, gone.priority, gone.match)]
    for entry in (STALE, FOREIGN):
        switch.flows[(entry.table_id, entry.priority, entry.match)] = entry
    return gone


@pytest.mark.parametrize("restart", [False, True], ids=["switch reconnects", "controller restarts"])
def test_after_a_reconnect_or_restart_the_switch_converges_and_foreign_flows_stay(restart):
    topology = two_switches()
    harness = Harness(topology)
    now = start(harness)
    before = harness.switches[2].table()
    gone = tamper(harness.switches[2])
    if restart:  # a new controller: nothing believed of any switch, same topology learned
        harness = Harness(topology, switches=harness.switches)
        harness.connect(1, now)
        harness.poll(1, now)
    harness.connect(2, now)  # a new ledger: believes only the control flows it just sent
    assert harness.reconciler.ledger(2).flows == set(build_control_flows())
    _, flows_report = harness.poll(2, now)
    assert (flows_report.missing, flows_report.unexpected) == (0, len(before) - 4)
    assert gone not in harness.switches[2].table() and STALE in harness.switches[2].table()
    later = now + SETTLE_S
    harness.reconciler.newly_settled(later)
    harness.converge(later)
    assert harness.switches[2].table() == before | {FOREIGN}


def test_a_disconnected_switch_is_forgotten_and_the_rest_converge_without_it():
    harness = Harness(two_switches())
    now = start(harness)
    harness.reconciler.disconnect(2)
    assert harness.reconciler.connected() == frozenset({1})
    plans = harness.converge(now)
    assert [p.dpid for p in plans] == [1]
    forwarding = [e for e in harness.switches[1].table() if e.component == Component.FORWARDING]
    # no path to the host behind switch 2 any more, and no link: only the ARP of its own host
    assert [dict(e.match).get("arp_spa") for e in forwarding] == ["10.0.0.1"]


# -- replies and changes in flight ---------------------------------------------------------
def test_a_flow_reply_that_arrives_after_a_change_is_not_believed():
    customers = CustomerMapping()
    harness = Harness(two_switches(), customers)
    now = start(harness)
    xid, answer_then = harness.ask(1, "flows")
    customers.update("alice", alice())  # a change goes out before the answer arrives
    harness.converge(now)
    ledger = harness.reconciler.ledger(1)
    believed = set(ledger.flows)
    assert harness.answer(1, xid, "flows", answer_then) is None  # stale: may lack the change
    assert ledger.flows == believed
    xid, answer_now = harness.ask(1, "flows")
    report = harness.answer(1, xid, "flows", answer_now)
    assert report is not None and not report.differs
    assert harness.answer(1, xid, "flows", answer_now) is None  # one answer per request


def test_a_meter_reply_after_a_change_is_not_believed_and_only_cems_meters_count():
    customers = CustomerMapping()
    harness = Harness(two_switches(), customers)
    now = start(harness)
    harness.switches[1].meters[7] = MeterSpec(7, 100, 10)  # someone else's meter
    customers.update("alice", alice())
    harness.converge(now)
    xid, answer_then = harness.ask(1, "meters")
    customers.update("alice", alice(rate_bps=4 * M))
    harness.converge(now)
    assert harness.answer(1, xid, "meters", answer_then) is None
    xid, answer_now = harness.ask(1, "meters")
    report = harness.answer(1, xid, "meters", answer_now)
    assert not report.first and not report.differs
    assert set(harness.reconciler.ledger(1).meters) == {customer_meter_id(1)}
    assert 7 in harness.switches[1].meters  # left alone


def test_multipart_replies_are_collected_until_the_last_part():
    ledger = Reconciler(SETTLE_S).connect(1, 0.0)
    assert ledger.collect(5, ["a", "b"], more=True) is None
    assert ledger.collect(6, ["x"], more=False) == ["x"]
    assert ledger.collect(5, ["c"], more=False) == ["a", "b", "c"]


# -- meters before the flows that use them ---------------------------------------------
def test_a_meter_is_added_before_the_flows_that_use_it_and_removed_after_them():
    customers = CustomerMapping()
    customers.update("alice", alice())
    harness = Harness(two_switches(), customers)
    harness.connect(1, 0.0)
    harness.connect(2, 0.0)
    harness.reconciler.newly_settled(SETTLE_S)
    plans = harness.converge(SETTLE_S)  # settled, but the meters are not known yet
    held = {entry for plan in plans for entry, _ in plan.held}
    assert held and all(meters_used(e) == (customer_meter_id(1),) for e in held)
    assert "not known yet" in plans[0].held[0][1]
    assert not any(isinstance(i, MeterMod) for _, _, i in harness.sent)
    harness.sent.clear()
    harness.poll(1, SETTLE_S)  # the meter-config answer: now the meter can go first
    kinds = [(type(i).__name__, i.command) for _, _, i in harness.sent
             if isinstance(i, (FlowMod, MeterMod))]
    assert kinds[0] == ("MeterMod", "add") and ("FlowMod", "add") in kinds
    switch = harness.switches[1]
    assert switch.errors == [] and switch.meters == {customer_meter_id(1): MeterSpec(
        customer_meter_id(1), 8000, 800)}
    net = FakeNetwork(harness.topology, {d: s.table() for d, s in harness.switches.items()})
    packet = {"eth_src": mac(1), "eth_dst": mac(2), "eth_type": 0x0800, "ip_dscp": 0}
    assert net.deliver(1, packet) == ("host", 2, 1) and packet["ip_dscp"] == 46
    assert net.meters_hit == [(1, customer_meter_id(1))]
    # a new rate modifies the meter in place; deleting the customer removes flows first
    harness.sent.clear()
    customers.update("alice", alice(rate_bps=2 * M))
    harness.converge(SETTLE_S)
    assert [(type(i).__name__, i.command) for _, _, i in harness.sent] == [("MeterMod", "modify")]
    harness.sent.clear()
    customers.update("alice", None)
    harness.converge(SETTLE_S)
    order = [(type(i).__name__, i.command) for _, _, i in harness.sent]
    # (her host's ARP flow is put back without the meter: an add, before the meter goes)
    assert order[-1] == ("MeterMod", "delete") and \
        set(order[:-1]) == {("FlowMod", "delete"), ("FlowMod", "add")}
    assert switch.errors == [] and METER_BASE + 1 not in switch.meters
    assert all(not meters_used(e) for e in switch.table())


def test_a_meter_removed_behind_cems_back_comes_back_before_its_flows():
    customers = CustomerMapping()
    customers.update("alice", alice())
    harness = Harness(two_switches(), customers)
    now = start(harness)
    switch = harness.switches[1]
    switch.lose_meter(customer_meter_id(1))
    harness.sent.clear()
    harness.poll(1, now)
    order = [(type(i).__name__, i.command) for _, _, i in harness.sent
             if isinstance(i, (FlowMod, MeterMod))]
    # her two flows and her host's ARP flow, which use the meter
    assert order[0] == ("MeterMod", "add") and order.count(("FlowMod", "add")) == 3
    assert switch.errors == []
    assert switch.table() == harness.desired(now).flows(1)


# -- OpenFlow errors ---------------------------------------------------------------------
def test_a_refused_change_is_explained_logged_once_and_sent_again_after_the_next_answer():
    customers = CustomerMapping()
    customers.update("alice", alice())
    harness = Harness(two_switches(), customers)
    now = start(harness)
    switch = harness.switches[1]
    # The switch loses the meter and cems is not told: the flows' re-add will be refused.
    switch.lose_meter(customer_meter_id(1))
    xid, answer = harness.ask(1, "flows")
    report = harness.answer(1, xid, "flows", answer)
    assert report.missing == 3   # her two flows and her host's ARP flow use the meter
    harness.converge(now)
    assert len(switch.errors) == 3
    failed_xid, why = switch.errors[0]
    error = harness.reconciler.error(1, failed_xid, 10, 1)
    assert error.first and isinstance(error.offending, FlowMod) and "not found" in why
    assert meters_used(error.offending.entry) == (customer_meter_id(1),)
    assert not harness.reconciler.error(1, switch.errors[1][0], 10, 1).first  # once per kind
    assert harness.reconciler.error(1, 999_999, 10, 1).offending is None  # not remembered
    # cems still believes the flows; the next authoritative answers correct it: the meter
    # answer shows the meter missing, and it is added before the flows are sent again
    switch.errors.clear()
    harness.poll(1, now)
    assert switch.errors == [] and switch.table() == harness.desired(now).flows(1)


# -- desired state -------------------------------------------------------------------------
class Rogue:
    component = Component.POLICY

    def __init__(self, contribution):
        self.contribution = contribution

    def contribute(self, view, earlier):
        return self.contribution


def test_a_contributor_may_only_give_flows_of_its_own_component_and_meters_must_agree():
    view = SwitchView(frozenset({1}), (1,))
    forwarding_cookie = cookie_for(Component.FORWARDING, "x")
    foreign = Rogue(Contribution({1: frozenset({FlowEntry.make(FORWARDING_TABLE, 1, {}, (),
                                                               forwarding_cookie)})}))
    with pytest.raises(DesiredStateError, match="not one of its own"):
        assemble(view, (ControlFlows(), foreign))
    customers = CustomerMapping()
    customers.update("alice", alice())
    meter_id = customer_meter_id(1)
    clash = Rogue(Contribution({}, {1: {meter_id: MeterSpec(meter_id, 1, 16)}}))
    with pytest.raises(DesiredStateError, match=f"meter {meter_id}"):
        assemble(view, (customers, clash))
    agree = Rogue(Contribution({}, {1: {meter_id: customers.for_switch(1)[1][meter_id]}}))
    state = assemble(view, (ControlFlows(), customers, agree))
    assert state.components() == (Component.CONTROL, Component.CSM, Component.POLICY)
    assert state.meters(1) == customers.for_switch(1)[1]
    assert state.flows(1) == build_control_flows() | customers.for_switch(1)[0]


def test_one_switch_whose_desired_state_cannot_be_planned_does_not_stop_the_others():
    harness = Harness(two_switches())
    now = start(harness)
    desired = harness.desired(now)
    believed = set(harness.reconciler.ledger(1).flows)

    def flows_of(dpid):
        if dpid == 1:
            raise TypeError("'<' not supported between 'int' and 'str'")  # bad data
        return desired.flows(dpid) | {STALE}
    failures = []
    plans = harness.reconciler.converge(desired.view, flows_of, desired.meters,
                                        failed=lambda dpid, err: failures.append(dpid))
    assert failures == [1] and [p.dpid for p in plans] == [2] and plans[0].flows_added == 1
    assert harness.reconciler.ledger(1).flows == believed  # left as it was


class Failing:
    component = Component.MIRROR

    def __init__(self):
        self.fail = False

    def contribute(self, view, earlier):
        if self.fail:
            raise RuntimeError("a contributor's bug")
        flows = frozenset({FlowEntry.make(FORWARDING_TABLE, 1400, {"eth_src": mac(1)}, (),
                                          cookie_for(Component.MIRROR, "x"))})
        return Contribution({1: flows})


def test_a_contributor_that_fails_keeps_what_it_gave_last_time():
    view = SwitchView(frozenset({1}), (1,))
    failing = Failing()
    before = assemble(view, (ControlFlows(), failing))
    failing.fail = True
    errors = []
    after = assemble(view, (ControlFlows(), failing), before,
                     lambda component, err: errors.append((component, str(err))))
    assert errors == [(Component.MIRROR, "a contributor's bug")]
    assert after.flows(1) == before.flows(1)  # its flows are not removed because it failed
    with pytest.raises(RuntimeError):
        assemble(view, (ControlFlows(), failing))  # without a fallback it is the caller's


def test_a_customers_own_arp_goes_through_its_meter_and_stops_when_it_is_gone():
    """A customer's unicast ARP takes the pair's flows without the controller (during a
    failover): through the customer's meter, like the rest of its traffic."""
    customers = CustomerMapping()
    customers.update("alice", alice())
    harness = Harness(two_switches(), customers)
    now = start(harness)
    harness.converge(now)

    def arp_flows():
        return [e for e in harness.switches[1].table() if dict(e.match).get("arp_spa")]
    assert [e.instructions for e in arp_flows()] == [
        (("meter", customer_meter_id(1)), ("goto_table", FORWARDING_TABLE))]
    customers.update("alice", None)     # no customer any more: no meter
    harness.converge(now + 1)
    assert [e.instructions for e in arp_flows()] == [(("goto_table", FORWARDING_TABLE),)]
    assert not [m for m in harness.switches[1].meters if m >= METER_BASE]
