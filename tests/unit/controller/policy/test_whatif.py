"""What-if, admission and advised bitrates on the small access network of world.py."""

import dataclasses

import pytest

from controller.policy.whatif import (Proposal, Session, Unanswerable, admit, advise,
                                      path_of, what_if)

from tests.unit.controller.policy.world import (B, G_PHONE, L12, L13, L24, L34, V, Z_PC,
                                                snapshot, with_video)


def test_a_proposed_meter_on_the_bulk_predicts_the_voice_back_over_its_target():
    predictions = what_if(snapshot(), Proposal("meter", "z", rate_bps=20_000_000))
    assert [p.element for p in predictions] == [L24, L12]   # busiest first
    link = predictions[0]
    assert link.utilisation_before > 1 > 0.8 > link.utilisation_after
    assert link.scores_before[("g", "voice")] < 4.03 <= link.scores_after[("g", "voice")]


def test_an_sls_change_to_a_higher_rate_changes_nothing_the_twin_can_know():
    (link, _) = what_if(snapshot(), Proposal("sls", "z", rate_bps=100_000_000))
    assert link.utilisation_after == link.utilisation_before


def test_re_marking_behind_egress_classes_is_predicted_per_class():
    snap = snapshot(voice_class="bronze", allowed=("silver", "bronze"), classes=True)
    link = what_if(snap, Proposal("priority", "g", service_class="silver",
                                  service="voice"))[0]
    assert link.scores_after[("g", "voice")] > link.scores_before[("g", "voice")]


def test_questions_that_cannot_be_answered_say_why():
    with pytest.raises(Unanswerable, match="no contract"):
        what_if(snapshot(), Proposal("meter", "nobody", rate_bps=1))
    with pytest.raises(Unanswerable, match="one of meter, priority, sls, reroute"):
        what_if(snapshot(), Proposal("shape", "z"))
    with pytest.raises(Unanswerable, match="names the element to go around"):
        what_if(snapshot(), Proposal("reroute", "z"))
    with pytest.raises(Unanswerable, match="no other path for .* has room under 80%"):
        what_if(snapshot(), Proposal("reroute", "z", element=L24))   # 30 Mbit/s there
    with pytest.raises(Unanswerable, match="no traffic of g iptv"):
        what_if(snapshot(), Proposal("priority", "g", service="iptv", service_class="gold"))
    with pytest.raises(Unanswerable, match="needs its rate"):
        what_if(snapshot(), Proposal("meter", "z"))


def test_a_new_bronze_stream_on_the_full_link_is_refused_with_the_link_named():
    result = admit(snapshot(), Session("z", "iptv", 4e6, V, Z_PC))
    assert not result.admitted and result.element == L24
    assert "would take " + L24 in result.reason and "admission limit 90%" in result.reason
    assert result.prediction.utilisation_after > result.prediction.utilisation_before


def test_a_gold_stream_is_admitted_where_lower_class_bulk_can_be_metered_to_make_room():
    result = admit(snapshot(), Session("g", "iptv", 4e6, V, G_PHONE))
    assert result.admitted and "can be metered to make room" in result.reason
    # unless the bronze traffic is at its floor already
    assert not admit(snapshot(z_minimum=40e6), Session("g", "iptv", 4e6, V, G_PHONE)).admitted


def test_on_an_idle_network_sessions_are_admitted_and_the_tightest_element_named():
    result = admit(snapshot(bulk_bps=1e6, degraded=False), Session("z", "iptv", 4e6, B, Z_PC))
    assert result.admitted and L24 in result.reason


def test_a_path_no_pair_takes_yet_is_that_of_the_same_switches_else_the_fewest_hops():
    # B to G's phone: no traffic yet, but V's to it crosses the same switches
    path, names = path_of(snapshot(), B, G_PHONE)
    assert path == (1, 2, 4) and names == (L12, L24, "access port 0000000000000004:5")
    lone = dataclasses.replace(snapshot(), pairs=())
    assert path_of(lone, B, G_PHONE) == (path, names)   # the fewest hops (1-2 before 1-3)
    with pytest.raises(Unanswerable, match="no path between"):
        path_of(snapshot(), G_PHONE, V)   # the world's links go towards the customers only
    with pytest.raises(Unanswerable, match="has not been seen"):
        path_of(snapshot(), "00:00:00:00:00:99", V)


def test_a_video_behind_a_full_link_is_advised_down_to_the_room_there_is():
    advice = advise(with_video(snapshot(bulk_bps=20e6, degraded=False)), "g")
    # room at 80 % of 30 Mbit/s besides 20.1 Mbit/s of other traffic: 3.9 Mbit/s
    assert advice.element == L24 and 3.8e6 < advice.bitrate_bps < 4e6
    assert "should stay at or below 3.90 Mbit/s" in advice.reason
    floor = advise(with_video(snapshot()), "g", floor_bps=500_000)
    assert floor.bitrate_bps == 500_000


def test_a_video_with_room_gets_no_advice():
    assert advise(with_video(snapshot(bulk_bps=1e6, degraded=False)), "g").bitrate_bps == 0
    assert "no video of z" in advise(snapshot(), "z").reason


def test_a_proposed_reroute_empties_the_link_and_loads_the_path_the_engine_would_take():
    predictions = {p.element: p for p in what_if(
        snapshot(alt_capacity=100e6), Proposal("reroute", "z", element=L24))}
    assert set(predictions) == {L24, L13, L34}   # the old link and the new path's links
    old, new = predictions[L24], predictions[L34]
    assert old.utilisation_before > 1 > 0.1 > old.utilisation_after
    assert old.scores_after[("g", "voice")] > 4.03 > old.scores_before[("g", "voice")]
    assert new.utilisation_after > new.utilisation_before
    assert new.utilisation_after * 100e6 == pytest.approx(1e6 + 32.9e6)
