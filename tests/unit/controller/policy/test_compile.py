"""Actions in force as POLICY flows and meters, assembled with the customer mapping."""

import dataclasses

from controller.csm.mapping import CustomerMapping
from controller.csm.model import Customer, ServiceClass, Sls
from controller.csm.model import CustomerState
from controller.openflow.desired import assemble
from controller.openflow.pipeline import (CLASSIFY_TABLE, FORWARDING_TABLE, PRIORITY,
                                          Component)
from controller.openflow.reconcile import SwitchView
from controller.policy.compile import POLICY_METER_BASE, PolicyFlows, policy_flows
from controller.policy.engine import PolicyConfig, PolicyMemory, decide

from tests.unit.controller.policy.world import B, G_PHONE, V, Z_PC, snapshot

# customer z's PC sends upstream too: its classify flow on its access switch 4 marks and
# meters it
UPSTREAM = (Z_PC, B)


def mapping() -> CustomerMapping:
    out = CustomerMapping()
    out.update("z", CustomerState(Customer("z", "Z", access_dpid=4, access_port=6,
                                           hosts=(Z_PC,)),
                                  Sls("z", ServiceClass.SILVER, 40_000_000, 0.0), 0x10002))
    return out


def actions_for(**kwargs):
    return decide(snapshot(**kwargs), PolicyMemory(), PolicyConfig()).memory.in_force()


def flows_on(flows, dpid):
    return sorted(flows.get(dpid, ()))


def test_a_meter_holds_the_pair_to_its_rate_on_the_switch_where_it_enters():
    (action,) = actions_for()
    flows, meters, conflicts = policy_flows([action], {})
    (meter,) = meters[1].values()
    assert meter.meter_id == POLICY_METER_BASE + action.action_id
    assert meter.rate_kbps == action.intent.rate_bps // 1000
    (entry,) = flows_on(flows, 1)
    assert entry.table_id == CLASSIFY_TABLE and entry.priority == PRIORITY["policy_mark"]
    assert dict(entry.match) == {"eth_type": 0x0800, "eth_src": B, "eth_dst": Z_PC}
    # the server's traffic had no marking of its own: only the meter and on to forwarding
    assert entry.instructions == (("meter", meter.meter_id), ("goto_table", FORWARDING_TABLE))
    assert entry.component == Component.POLICY and not conflicts


def test_a_metered_customer_device_keeps_its_marking_and_loses_only_its_own_meter():
    (action,) = actions_for()
    action = dataclasses.replace(action, intent=dataclasses.replace(
        action.intent, pairs=(UPSTREAM,), switch=4))
    csm = mapping().for_switch(4)[0]
    flows, meters, _ = policy_flows([action], {4: csm})
    (entry,) = flows_on(flows, 4)
    actions = dict(entry.instructions)["apply_actions"]
    assert ("set_field", "ip_dscp", 34) in actions and ("set_queue", 2) in actions
    assert ("meter", 0x10002) not in entry.instructions
    assert ("meter", POLICY_METER_BASE + action.action_id) in entry.instructions


def test_re_marking_keeps_the_customers_meter_and_changes_dscp_and_queue():
    (action,) = actions_for(voice_class="bronze", allowed=("silver", "bronze"), classes=True)
    assert action.intent.kind == "priority"
    flows, meters, _ = policy_flows([action], {})
    assert not meters
    (entry,) = flows_on(flows, 1)
    assert dict(entry.match) == {"eth_type": 0x0800, "eth_src": V, "eth_dst": G_PHONE}
    assert dict(entry.instructions)["apply_actions"] == (("set_field", "ip_dscp", 34),
                                                        ("set_queue", 2))
    # upstream from a customer's device, its SLS meter stays on the re-marked traffic
    upstream = dataclasses.replace(action, intent=dataclasses.replace(
        action.intent, pairs=(UPSTREAM,), switch=4))
    flows, _, _ = policy_flows([upstream], {4: mapping().for_switch(4)[0]})
    (entry,) = flows_on(flows, 4)
    assert ("meter", 0x10002) in entry.instructions


def test_a_reroute_puts_the_pair_on_every_switch_of_the_new_path():
    (action,) = actions_for(z_minimum=40e6, alt_capacity=100e6)
    flows, meters, _ = policy_flows([action], {})
    assert not meters
    outputs = {}
    for dpid in (1, 3, 4):
        (entry,) = flows_on(flows, dpid)
        assert entry.table_id == FORWARDING_TABLE
        assert entry.priority == PRIORITY["policy_route"] > PRIORITY["mirror"]
        assert dict(entry.match) == {"eth_src": B, "eth_dst": Z_PC}
        outputs[dpid] = dict(entry.instructions)["apply_actions"]
    assert outputs == {1: (("output", 2),), 3: (("output", 2),), 4: (("output", 6),)}
    assert 2 not in flows


def test_two_actions_on_one_flow_keep_the_older_and_say_so():
    (action,) = actions_for()
    younger = dataclasses.replace(action, action_id=action.action_id + 1,
                                  intent=dataclasses.replace(action.intent, rate_bps=5_000_000))
    flows, meters, conflicts = policy_flows([younger, action], {})
    (entry,) = flows_on(flows, 1)
    assert ("meter", POLICY_METER_BASE + action.action_id) in entry.instructions
    assert len(conflicts) == 1 and f"action {younger.action_id} (meter)" in conflicts[0]


def test_the_contributor_assembles_after_the_mapping_and_waits_for_every_switch():
    contributor = PolicyFlows()
    contributor.actions = actions_for(z_minimum=40e6, alt_capacity=100e6)
    customers = mapping()
    partial = assemble(SwitchView(frozenset({1, 3}), (1, 3)), [customers, contributor])
    assert not partial.part(Component.POLICY).flows   # switch 4 has not settled
    full = assemble(SwitchView(frozenset({1, 3, 4}), (1, 3, 4)), [customers, contributor])
    assert set(full.part(Component.POLICY).flows) == {1, 3, 4}
    components = {e.component for e in full.flows(4)}
    assert components == {Component.CSM, Component.POLICY}


def test_a_meter_on_what_an_edge_host_sends_shapes_that_host_to_the_meters_rate():
    from controller.csm.queues import plan_traffic_control
    from controller.policy.compile import shaped_rate
    from controller.policy.engine import PolicyConfig, PolicyMemory, decide
    from tests.unit.controller.policy.world import B, snapshot
    # in the world z's bulk is a download from B; here z's PC sends it (an upload)
    actions = decide(snapshot(), PolicyMemory(), PolicyConfig()).memory.in_force()
    (meter,) = actions
    assert shaped_rate("z", 40_000_000, [B], actions) == meter.intent.rate_bps < 40_000_000
    assert shaped_rate("z", 40_000_000, ["00:00:00:00:00:02"], actions) == 40_000_000
    assert shaped_rate("g", 8_000_000, [B], actions) == 8_000_000   # not g's meter
    assert shaped_rate("z", None, [B], actions) is None
    planned = plan_traffic_control((), (("z", "z-ns", "eth0"),), {},
                                   lambda c: shaped_rate(c, 40_000_000, [B], actions))
    assert [(t.netns, t.plan.ifname, t.plan.link_bps) for t in planned] == \
        [("z-ns", "eth0", meter.intent.rate_bps)]


def test_a_re_marking_grows_the_guarantee_of_its_class_on_the_egress_classes():
    from controller.csm.model import ServiceClass as C
    from controller.csm.queues import plan_egress
    from controller.policy.compile import committed_with_policy
    from controller.policy.engine import PolicyConfig, PolicyMemory, decide
    from tests.unit.controller.policy.world import snapshot
    snap = snapshot(voice_class="bronze", allowed=("gold", "bronze"), classes=True)
    actions = decide(snap, PolicyMemory(), PolicyConfig()).memory.in_force()
    (remark,) = actions
    assert remark.intent.kind == "priority" and remark.intent.rate_bps == 100_000
    committed = committed_with_policy({C.GOLD: 2_000_000, C.SILVER: 1_000_000}, actions)
    assert committed == {C.GOLD: 2_125_000, C.SILVER: 1_000_000}   # with 25 % headroom
    assert committed_with_policy({C.SILVER: 5}, ()) == {C.SILVER: 5}
    # the HTB plan follows: Gold guaranteed what it now carries
    gold = next(q for q in plan_egress("s3-eth3", 30_000_000, committed).queues
                if q.service_class is C.GOLD)
    assert gold.rate_bps == 2_125_000
