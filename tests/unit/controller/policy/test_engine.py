"""The policy engine on built snapshots: each action, each guardrail, revert, rollback,
outcome, dry-run and pause; and, over random snapshots, that no intent goes below a floor."""

import dataclasses

from hypothesis import given, settings, strategies as st

from controller.policy.engine import PolicyConfig, PolicyMemory, decide, floor_violation
from controller.policy.model import (ACT, CLASS_RANK, METER, OUTCOME, PRIORITY, REFUSE, REROUTE, REVERT,
                                     ROLLBACK, Contract, Degradation, Element, PairTraffic,
                                     Snapshot, Suspect)

from tests.unit.controller.policy.world import B, G_PHONE, L24, L34, V, Z_PC, snapshot

CONFIG = PolicyConfig(observe_s=10.0)


def first_act(snap, config=CONFIG, memory=PolicyMemory()):
    result = decide(snap, memory, config)
    acts = [d for d in result.decisions if d.kind == ACT]
    return result, acts


def test_congestion_by_lower_class_bulk_meters_it_to_what_the_link_can_carry():
    result, acts = first_act(snapshot())
    (action,) = result.applied
    intent = action.intent
    assert intent.kind == METER and intent.customer_id == "z" and intent.switch == 1
    assert intent.pairs == ((B, Z_PC),)
    # 33 Mbit/s on 30: down to 80 % (24 Mbit/s), all taken from the bulk transfer
    assert intent.rate_bps == int(32.9e6 - (33e6 - 24e6))
    assert intent.prediction.utilisation_after <= 0.8 + 1e-9
    assert intent.prediction.scores_after[("g", "voice")] >= 4.03 > \
        intent.prediction.scores_before[("g", "voice")]
    assert acts[0].action_id == action.action_id
    assert "g voice degraded behind link 0000000000000002:2->0000000000000004" in acts[0].reason
    assert "metered to 23.9 Mbit/s" in acts[0].reason
    assert acts[0].predicted["utilisation_after"] <= 0.8 + 1e-9
    assert result.memory.in_force() == (action,)


def test_behind_egress_classes_a_bronze_voice_is_re_marked_to_the_class_its_sla_allows():
    snap = snapshot(voice_class="bronze", allowed=("silver", "bronze"), classes=True)
    result, _ = first_act(snap)
    (action,) = result.applied
    assert action.intent.kind == PRIORITY
    assert action.intent.service_class == "silver" and action.intent.pairs == ((V, G_PHONE),)
    assert action.intent.switch == 1
    assert action.intent.prediction.scores_after[("g", "voice")] >= 4.03 > \
        action.intent.prediction.scores_before[("g", "voice")]


def test_re_marking_is_not_offered_beyond_what_the_sla_allows():
    snap = snapshot(voice_class="bronze", allowed=("bronze",), classes=True)
    result, _ = first_act(snap)
    assert not result.applied
    assert "no higher class is allowed" in result.decisions[0].reason


def test_behind_egress_classes_a_silver_voice_is_not_hurt_by_bronze_so_nothing_is_done():
    # strict priority already keeps silver apart from the bronze bulk: the twin predicts no
    # gain from metering it, and the engine says so instead of acting
    snap = snapshot(voice_class="silver", allowed=("gold", "silver"), classes=True)
    result, _ = first_act(snap)
    assert not result.applied
    assert "no action is predicted to help g voice enough" in result.decisions[0].reason


def test_when_the_competitor_is_at_its_floor_the_bulk_is_rerouted_over_the_idle_path():
    result, _ = first_act(snapshot(z_minimum=40e6, alt_capacity=100e6))
    (action,) = result.applied
    intent = action.intent
    assert intent.kind == REROUTE and intent.path == (1, 3, 4)
    assert intent.hops == ((1, 2), (3, 2), (4, 6))
    assert intent.prediction.utilisation_after < 0.1


def test_no_room_anywhere_is_refused_with_the_reason_and_logged_once_per_cooldown():
    snap = snapshot(z_minimum=40e6, alt_load=29e6)
    result, acts = first_act(snap)
    assert not acts and not result.applied
    (refusal,) = [d for d in result.decisions if d.kind == REFUSE]
    assert refusal.element == L24 and "no action can help g voice" in refusal.reason
    again = decide(dataclasses.replace(snap, now=snap.now + 1), result.memory, CONFIG)
    assert not again.decisions
    later = decide(dataclasses.replace(snap, now=snap.now + 31), again.memory, CONFIG)
    assert [d.kind for d in later.decisions] == [REFUSE]


def test_cooldown_per_target():
    memory = PolicyMemory(last_change=((f"{L24}|z", 995.0),))
    result, acts = first_act(snapshot(), memory=memory)
    assert not acts
    (refusal,) = result.decisions
    assert refusal.kind == REFUSE and "cooldown: this target changed 5 s ago" in refusal.reason


def test_cap_on_changes_per_minute():
    memory = PolicyMemory(changes=tuple(950.0 + i for i in range(6)))
    result, acts = first_act(snapshot(), memory=memory)
    assert not acts and "cap: 6 changes in the last minute" in result.decisions[0].reason
    # a minute on, the cap is free again
    result, acts = first_act(snapshot(now=1011.0), memory=memory)
    assert len(acts) == 1


def test_cap_on_customers_touched_per_evaluation():
    snap = snapshot(bulk_bps=16e6)
    # a second bronze competitor on the same link, another 17 Mbit/s, with a floor of 12:
    # metering it alone cannot take enough away
    extra = PairTraffic(B, "00:00:00:00:00:03", "y", "bulk", "bronze", 17e6, (1, 2, 4),
                        snap.pairs[0].elements)
    contracts = {**snap.contracts, "y": Contract("y", "bronze", 40_000_000, 12_000_000,
                                                 ("bronze",), 4, 0x10009)}
    elements = {**snap.elements, L24: dataclasses.replace(snap.elements[L24], load_bps=33.1e6)}
    snap = dataclasses.replace(snap, pairs=snap.pairs + (extra,), contracts=contracts,
                               elements=elements)
    both, _ = first_act(snap)
    assert sorted(a.intent.customer_id for a in both.applied) == ["y", "z"]
    one, _ = first_act(snap, PolicyConfig(max_customers_per_evaluation=1))
    assert [a.intent.customer_id for a in one.applied] == ["y"]
    (refusal,) = [d for d in one.decisions if d.kind == REFUSE]
    assert refusal.customer_id == "z" and "1 customers already touched" in refusal.reason


def test_floor_violation_names_the_sla_minimum():
    snap = snapshot()
    result, _ = first_act(snap)
    intent = dataclasses.replace(result.applied[0].intent, rate_bps=1_000_000)
    assert "below z's SLA minimum of 2000000 bit/s" in floor_violation(intent, snap)
    assert floor_violation(result.applied[0].intent, snap) == ""


def test_outcome_is_recorded_and_the_twins_error_measured():
    result, _ = first_act(snapshot())
    predicted = result.applied[0].intent.prediction.scores_after[("g", "voice")]
    calm = snapshot(now=1005.0, degraded=False, voice_score=4.1)
    early = decide(calm, result.memory, CONFIG)
    assert not [d for d in early.decisions if d.kind == OUTCOME]
    later = decide(dataclasses.replace(calm, now=1010.0), early.memory, CONFIG)
    (outcome,) = [d for d in later.decisions if d.kind == OUTCOME]
    assert outcome.observed == {"g/voice": 4.1} and outcome.predicted["g/voice"] == predicted
    assert abs(later.memory.mean_abs_error - abs(4.1 - predicted)) < 1e-9


def test_worse_after_the_action_is_rolled_back_and_held():
    result, _ = first_act(snapshot())
    worse = snapshot(now=1010.0, voice_score=2.8)
    rolled = decide(worse, result.memory, CONFIG)
    kinds = [d.kind for d in rolled.decisions]
    assert kinds[:2] == [OUTCOME, ROLLBACK]
    assert rolled.removed and not rolled.memory.in_force()
    assert "worse than before it (3.20)" in rolled.decisions[1].reason
    # still degraded, past the cooldown: the same meter is not tried again while held
    retry = decide(snapshot(now=1045.0, voice_score=2.8), rolled.memory, CONFIG)
    assert not retry.applied
    assert any("was rolled back" in d.reason for d in retry.decisions)


def test_revert_when_the_cause_is_gone_and_quality_holds_with_hysteresis():
    result, _ = first_act(snapshot())
    memory = result.memory
    # bulk ends (0.5 Mbit/s < half the meter), voice fine
    times = [1010.0, 1015.0, 1020.0, 1029.0]
    for now in times:
        step = decide(snapshot(now=now, bulk_bps=0.5e6, degraded=False, voice_score=4.3),
                      memory, CONFIG)
        memory = step.memory
        assert not step.removed, now
    # a degraded sample interval breaks the calm: the clock starts again
    memory = decide(snapshot(now=1030.0, bulk_bps=0.5e6), memory, CONFIG).memory
    assert memory.in_force()
    for now in (1031.0, 1051.0):
        step = decide(snapshot(now=now, bulk_bps=0.5e6, degraded=False, voice_score=4.3),
                      memory, CONFIG)
        memory = step.memory
    assert step.removed and not memory.in_force()
    (revert,) = [d for d in step.decisions if d.kind == REVERT]
    assert "the cause is gone" in revert.reason and "19 s" not in revert.reason


def test_while_the_bulk_runs_the_meter_stays_even_when_voice_is_fine():
    result, _ = first_act(snapshot())
    memory = result.memory
    for now in range(1010, 1100, 5):
        step = decide(snapshot(now=float(now), bulk_bps=23.9e6, degraded=False,
                               voice_score=4.3), memory, CONFIG)
        memory = step.memory
        assert not step.removed
    assert memory.in_force()


def test_dry_run_decides_and_logs_but_puts_nothing_in_force():
    result, acts = first_act(snapshot(), PolicyConfig(dry_run=True))
    assert acts and all(d.dry_run for d in result.decisions)
    assert result.memory.actions and not result.memory.in_force()
    # it is not decided again every second
    again = decide(snapshot(now=1001.0), result.memory, PolicyConfig(dry_run=True))
    assert not [d for d in again.decisions if d.kind == ACT]


def test_paused_reviews_but_does_not_act():
    result, acts = first_act(snapshot(), PolicyConfig(paused=True))
    assert not acts and not result.applied


def test_a_suspect_without_known_capacity_is_refused_with_what_to_configure():
    snap = snapshot()
    elements = {**snap.elements, L24: dataclasses.replace(snap.elements[L24],
                                                          capacity_bps=None)}
    result, acts = first_act(dataclasses.replace(snap, elements=elements))
    assert not acts and "csm.link_capacity_bps" in result.decisions[0].reason


def test_nothing_degraded_nothing_done():
    result, acts = first_act(snapshot(degraded=False))
    assert not acts and not result.decisions


# -- no intent below a floor, whatever the snapshot ------------------------------------------
customers = st.integers(min_value=1, max_value=6)


@st.composite
def snapshots(draw):
    n = draw(customers)
    capacity = draw(st.floats(min_value=1e6, max_value=1e9))
    pairs, contracts = [], {}
    for i in range(n):
        name = f"c{i}"
        klass = draw(st.sampled_from(["gold", "silver", "bronze"]))
        rate = draw(st.floats(min_value=0.0, max_value=2 * capacity))
        minimum = draw(st.integers(min_value=0, max_value=int(2 * capacity)))
        contracts[name] = Contract(name, klass, int(max(minimum, rate)), minimum,
                                   (klass,), 1, 0x10000 + i)
        pairs.append(PairTraffic(f"00:00:00:00:01:{i:02x}", f"00:00:00:00:02:{i:02x}", name,
                                 draw(st.sampled_from(["voice", "bulk", "web", "iptv"])),
                                 klass, rate, (1, 2), ("e",)))
    element = Element("e", 1, 1, capacity, sum(p.rate_bps for p in pairs))
    sick = draw(st.lists(st.sampled_from(sorted(contracts)), min_size=1, unique=True))
    degraded = tuple(Degradation(c, pairs[int(c[1:])].service, contracts[c].service_class,
                                 0.0, 2.0, 4.0) for c in sick)
    return Snapshot(100.0, {"e": element}, tuple(pairs), contracts, degraded,
                    (Suspect("e", 0.9, tuple(sick)),), {(d.customer_id, d.service): 2.0
                                                        for d in degraded})


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_no_intent_ever_goes_below_a_customers_sla_minimum(snap):
    result = decide(snap, PolicyMemory(), CONFIG)
    for action in result.applied:
        intent = action.intent
        assert floor_violation(intent, snap) == ""
        if intent.kind == METER:
            assert intent.rate_bps >= snap.contracts[intent.customer_id].sla_min_bps
            # only a class below the best degraded one is ever metered
            best = min(CLASS_RANK[d.service_class] for d in snap.degraded)
            assert CLASS_RANK[snap.contracts[intent.customer_id].service_class] > best
    assert len({a.intent.customer_id for a in result.applied}) <= \
        CONFIG.max_customers_per_evaluation


def test_a_switch_ranked_first_does_not_hide_the_congested_link_after_it():
    snap = snapshot()
    snap = dataclasses.replace(snap, suspects=(Suspect("switch 0000000000000002", 0.95, ("g",)),)
                               + snap.suspects)
    result, acts = first_act(snap)
    assert [a.intent.element for a in result.applied] == [L24]


def test_traffic_an_action_already_holds_is_no_candidate_for_another():
    result, _ = first_act(snapshot())
    # observed, still degraded, the bulk now at its meter's rate: no second meter on it
    step = decide(snapshot(now=1045.0, bulk_bps=23.9e6, voice_score=3.9), result.memory,
                  CONFIG)
    assert not step.applied
    assert not [d for d in step.decisions if d.kind == "act"]


def test_a_competitors_own_voice_and_iptv_are_not_metered_only_its_bulk():
    snap = snapshot()
    their_voice = PairTraffic(V, Z_PC, "z", "voice", "bronze", 0.1e6, (1, 2, 4),
                              snap.pairs[0].elements)
    snap = dataclasses.replace(snap, pairs=snap.pairs + (their_voice,))
    result, _ = first_act(snap)
    (action,) = result.applied
    assert action.intent.pairs == ((B, Z_PC),)


def test_a_lower_class_customer_degraded_by_its_own_download_is_metered_all_the_same():
    snap = snapshot()
    both = snap.degraded + (Degradation("z", "voice", "bronze", 990.0, 2.5, 3.6),)
    snap = dataclasses.replace(snap, degraded=both,
                               suspects=(Suspect(L24, 0.9, ("g", "z")),))
    result, _ = first_act(snap)
    (action,) = result.applied
    assert action.intent.kind == METER and action.intent.customer_id == "z"
    assert set(action.intent.for_services) == {("g", "voice"), ("z", "voice")}


def test_what_dry_run_decided_does_not_stop_the_engine_once_it_acts():
    dry = decide(snapshot(), PolicyMemory(), PolicyConfig(dry_run=True, observe_s=10.0))
    assert dry.memory.actions and not dry.memory.in_force()
    # even with dry-run's memory as it was, its action holds no traffic ...
    blocked = decide(snapshot(now=1001.0), dry.memory, CONFIG)
    assert "cooldown" in blocked.decisions[0].reason   # ... only its bookkeeping stands
    real = decide(snapshot(now=1001.0), dry.memory.leaving_dry_run(), CONFIG)
    assert [a.intent.kind for a in real.applied] == [METER]
    assert real.memory.in_force() == real.applied


def test_a_re_marking_takes_the_customers_iptv_across_the_element_with_its_degraded_voice():
    from tests.unit.controller.policy.world import L12
    snap = snapshot(voice_class="bronze", allowed=("gold", "bronze"), classes=True)
    iptv = PairTraffic(B, G_PHONE, "g", "iptv", "bronze", 4e6, (1, 2, 4), (L12, L24))
    bulk_of_g = PairTraffic(B, "00:00:00:00:00:03", "g", "bulk", "bronze", 1e6, (1, 2, 4),
                            (L12, L24))
    snap = dataclasses.replace(snap, pairs=snap.pairs + (iptv, bulk_of_g))
    result, _ = first_act(snap)
    (action,) = result.applied
    assert action.intent.kind == PRIORITY and action.intent.service_class == "gold"
    assert set(action.intent.pairs) == {(V, G_PHONE), (B, G_PHONE)}   # not its own bulk
    assert action.intent.service == "iptv,voice"
    assert "its iptv and voice re-marked from bronze to gold" in action.intent.reason
    assert action.intent.for_services == (("g", "voice"),)
