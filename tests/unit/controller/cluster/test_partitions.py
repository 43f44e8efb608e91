"""Customer partitions (controller.cluster.partitions): a stable partition per customer, even
shares over the instances, no gap and no lasting overlap in what each takes during a
hand-back, and a batch's records picked by their customer as the KPI store joins them."""

import collections
import dataclasses

import pytest

from controller.cluster.partitions import (NO_CUSTOMER, RecordPicker, customer_of,
                                           partition_of, plan_partitions, ranges)
from controller.validation import ip_address


def canonical(address):
    return ip_address("address", address)


@dataclasses.dataclass
class Record:
    src: str
    dst: str


def test_a_customers_partition_is_stable_and_customers_spread_evenly():
    assert partition_of("c42", 16) == partition_of("c42", 16)
    assert partition_of("c42", 1) == 0
    counts = collections.Counter(partition_of(f"c{i}", 16) for i in range(16_000))
    assert set(counts) == set(range(16))
    assert max(counts.values()) < 1.1 * 1000 and min(counts.values()) > 0.9 * 1000
    # pinned: a partition must not change between versions or hosts (blake2b, not hash())
    assert [partition_of(c, 16) for c in ("c1", "c2", "")] == \
        [partition_of(c, 16) for c in ("c1", "c2", NO_CUSTOMER)]


def test_every_partition_is_taken_by_exactly_one_instance_once_the_keys_settle():
    members = ["a", "b", "c"]
    holders = {}
    for _ in range(3):      # a few rounds: everyone claims what the shares give it
        plans = {m: plan_partitions(m, members, holders, 16) for m in members}
        for member, plan in plans.items():
            for p in plan.claim:
                holders.setdefault(p, member)
    plans = {m: plan_partitions(m, members, holders, 16) for m in members}
    assert all(not p.claim and not p.release for p in plans.values())
    taking = [p.taking for p in plans.values()]
    assert sorted(len(t) for t in taking) == [5, 5, 6]
    assert frozenset().union(*taking) == frozenset(range(16))
    assert sum(len(t) for t in taking) == 16


def test_a_dead_instances_partitions_go_to_the_others_and_a_newcomer_gets_its_share_one_by_one():
    holders = {p: ("a" if p % 2 else "b") for p in range(8)}
    # b died: its keys expired with its lease; a takes all of them at once
    alone = {p: h for p, h in holders.items() if h == "a"}
    plan = plan_partitions("a", ["a"], alone, 8)
    assert plan.claim == (0, 2, 4, 6) and plan.taking == frozenset(range(8))
    holders = {p: "a" for p in range(8)}
    # b rejoins: a hands back one per round; b takes it from the first round on
    plan_a = plan_partitions("a", ["a", "b"], holders, 8)
    plan_b = plan_partitions("b", ["a", "b"], holders, 8)
    assert len(plan_a.release) == 1 and plan_b.claim == ()
    assert plan_a.taking == frozenset(range(8))              # until its key is gone
    assert len(plan_b.taking) == 4 and plan_b.taking & plan_a.taking == plan_b.taking
    # the round after a deleted the key: b claims it, a no longer takes it
    given = plan_a.release[0]
    assert given in plan_b.taking
    del holders[given]
    plan_a = plan_partitions("a", ["a", "b"], holders, 8)
    plan_b = plan_partitions("b", ["a", "b"], holders, 8)
    assert plan_b.claim == (given,) and given not in plan_a.taking
    assert len(plan_a.release) == 1 and plan_a.release[0] != given   # the next one
    assert plan_a.taking | plan_b.taking == frozenset(range(8))


def test_records_are_picked_by_the_customer_the_kpi_store_would_join():
    mapping = {"10.0.0.1": "c1", "10.0.0.2": "c2", "2001:db8::1": "c3"}
    assert customer_of("10.0.0.1", "10.0.0.2", mapping, canonical) == "c1"   # sender first
    assert customer_of("192.0.2.9", "10.0.0.2", mapping, canonical) == "c2"
    assert customer_of("2001:DB8:0::1", "x", mapping, canonical) == "c3"     # canonical form
    assert customer_of("not an address", "192.0.2.9", mapping, canonical) == NO_CUSTOMER
    records = [Record("10.0.0.1", "8.8.8.8"), Record("8.8.8.8", "10.0.0.2"),
               Record("2001:db8::1", "::1"), Record("192.0.2.1", "192.0.2.2")]
    every = frozenset(range(4))
    assert RecordPicker(4, canonical).pick(records, every, mapping) == records
    assert RecordPicker(4, canonical).pick(records, frozenset(), mapping) == []
    mine = frozenset({partition_of("c1", 4), partition_of(NO_CUSTOMER, 4)})
    wanted = [r for r, c in zip(records, ["c1", "c2", "c3", NO_CUSTOMER])
              if partition_of(c, 4) in mine]
    assert RecordPicker(4, canonical).pick(records, mine, mapping) == wanted


def test_a_picker_forgets_what_it_found_when_the_directory_maps_addresses_anew():
    picker = RecordPicker(64, canonical)
    records = [Record("10.0.0.1", "192.0.2.1")]
    first = {"10.0.0.1": "c1"}
    mine = frozenset({partition_of("c1", 64)})
    assert picker.pick(records, mine, first) == records
    assert picker.pick(records, mine, first) == records            # remembered
    moved = {"10.0.0.1": "c2"}                                      # the address changed hands
    assert partition_of("c2", 64) not in mine
    assert picker.pick(records, mine, moved) == []


@pytest.mark.parametrize("numbers, text", [((), ""), ((3,), "3"), ((0, 1, 2, 3, 7), "0-3, 7"),
                                           ((9, 1, 2, 5, 6), "1-2, 5-6, 9")])
def test_ranges(numbers, text):
    assert ranges(numbers) == text
