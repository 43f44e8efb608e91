import pytest

from controller.csm.model import ServiceClass as C
from controller.csm.queues import plan_egress

M = 1_000_000


def rates(plan):
    return {q.service_class: q.rate_bps for q in plan.queues}


def test_guarantees_follow_the_committed_rates_and_bronze_gets_the_rest():
    plan = plan_egress("s1-eth1", 20 * M, {C.GOLD: 8 * M, C.SILVER: 4 * M})
    assert rates(plan) == {C.GOLD: 8 * M, C.SILVER: 4 * M, C.BRONZE: 8 * M}
    assert all(q.ceil_bps == 20 * M for q in plan.queues)  # work-conserving
    assert [(q.service_class, q.prio, q.dscp) for q in plan.queues] == \
        [(C.GOLD, 0, 46), (C.SILVER, 1, 34), (C.BRONZE, 2, None)]


def test_overcommitment_keeps_every_class_a_floor_and_the_sum_at_the_link():
    plan = plan_egress("x", 20 * M, {C.GOLD: 30 * M, C.SILVER: 30 * M})
    r = rates(plan)
    assert r[C.BRONZE] >= 1 * M and r[C.SILVER] >= 1 * M
    assert sum(r.values()) <= 20 * M
    assert r[C.GOLD] > r[C.SILVER]  # Gold is served first
    empty = rates(plan_egress("x", 20 * M, {}))
    assert empty[C.GOLD] == empty[C.SILVER] == 1 * M and empty[C.BRONZE] == 18 * M
    with pytest.raises(ValueError, match="link rate"):
        plan_egress("x", 0, {})
