"""Decisions and the engine's memory survive JSON unchanged (the store keeps them so)."""

import dataclasses
import math

import pytest

from controller.policy.codec import (decision_from_json, decision_to_json, memory_from_json,
                                     memory_to_json)
from controller.policy.engine import PolicyConfig, PolicyMemory, decide
from controller.policy.model import Decision

from tests.unit.controller.policy import world


def test_a_memory_with_an_action_in_force_comes_back_equal_and_decides_the_same():
    first = decide(world.snapshot(), PolicyMemory(), PolicyConfig())
    assert first.memory.actions, "the world's congestion should have been acted on"
    back = memory_from_json(memory_to_json(first.memory))
    assert back == first.memory
    # a restarted engine carries on exactly as the one that kept running
    later = world.snapshot(now=1020.0, voice_score=4.2, degraded=False, bulk_bps=1e6)
    assert decide(later, back, PolicyConfig()) == decide(later, first.memory, PolicyConfig())


def test_reroute_hops_and_priority_classes_survive():
    rerouted = decide(world.snapshot(z_minimum=40e6, alt_capacity=100e6), PolicyMemory(), PolicyConfig())
    remarked = decide(world.snapshot(voice_class="bronze", allowed=("silver", "bronze"),
                                     classes=True), PolicyMemory(), PolicyConfig())
    for evaluation in (rerouted, remarked):
        assert evaluation.memory.actions
        assert memory_from_json(memory_to_json(evaluation.memory)) == evaluation.memory
    assert rerouted.memory.actions[0].intent.hops


def test_a_decision_without_a_model_keeps_its_nan_and_its_customers():
    decision = Decision(5.0, "outcome", 3, "meter", "s2-eth2", "z", "observed nan",
                        {"load_bps": 3e7}, {"score_after g/video": math.nan},
                        {"g/voice": 4.1}, True, ("g", "h"))
    back = decision_from_json(decision_to_json(decision))
    assert math.isnan(back.predicted["score_after g/video"])
    assert dataclasses.replace(back, predicted={}) == dataclasses.replace(decision,
                                                                          predicted={})


def test_a_memory_of_another_format_is_refused_with_the_format_named():
    with pytest.raises(ValueError, match="format 99"):
        memory_from_json('{"format": 99}')
