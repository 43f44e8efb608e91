"""Sharing switches over instances (controller.cluster.shares): even, the same answer on
every instance, only the needed moves when an instance joins or leaves, and hand-backs one at
a time."""

from controller.cluster.shares import assign, plan_switches


def test_shares_are_even_and_the_same_whatever_the_order():
    switches = list(range(1, 101))
    members = ["a:1", "b:2", "c:3"]
    wanted = assign(switches, members)
    assert wanted == assign(reversed(switches), reversed(members))
    counts = [list(wanted.values()).count(m) for m in members]
    assert max(counts) == 34 and sum(counts) == 100   # none above ceil(100 / 3)
    assert assign([1, 2], ["a", "b", "c"]) != {} and len(set(assign([1, 2], "abc").values())) == 2
    assert assign([1], []) == {}


def test_a_failure_moves_only_the_dead_instances_switches_and_a_newcomer_only_its_share():
    switches = range(1, 61)
    three = assign(switches, ["a", "b", "c"])
    two = assign(switches, ["a", "b"], three)          # c dies
    moved = [d for d in switches if three[d] != two[d]]
    assert sorted(moved) == sorted(d for d, m in three.items() if m == "c")
    assert sorted(list(two.values()).count(m) for m in "ab") == [30, 30]
    back = assign(switches, ["a", "b", "d"], two)      # a newcomer: 20 move, all to it
    moved = [d for d in switches if two[d] != back[d]]
    assert len(moved) == 20 and {back[d] for d in moved} == {"d"}
    assert assign(switches, ["a", "b", "d"], back) == back   # and then it is stable
    assert assign([1, 2], ["a", "b", "c"], {1: "a", 2: "a"}) in (
        {1: "a", 2: "b"}, {1: "a", 2: "c"}, {1: "b", 2: "a"}, {1: "c", 2: "a"})


def test_claims_are_for_the_own_share_or_for_switches_left_unheld():
    wanted = assign([1, 2, 3, 4], ["a", "b"])
    mine = sorted(d for d, m in wanted.items() if m == "a")
    others = sorted(d for d, m in wanted.items() if m == "b")
    plan = plan_switches("a", ["a", "b"], [1, 2, 3, 4], {}, {})
    assert plan.claim == tuple(mine) and plan.release == ()
    # b is not connected to its switches for a while: a takes them too
    plan = plan_switches("a", ["a", "b"], [1, 2, 3, 4], {d: "a" for d in mine}, {},
                         unheld_long=others)
    assert plan.claim == tuple(others)


def test_a_switch_goes_back_to_its_instance_one_at_a_time_and_only_when_it_is_connected():
    switches = [1, 2, 3, 4, 5, 6]
    held = {d: "a" for d in switches}                  # a was alone; b rejoins
    connected = {"a": frozenset(switches), "b": frozenset()}
    assert plan_switches("a", ["a", "b"], switches, held, connected).release == ()
    connected["b"] = frozenset(switches)
    plan = plan_switches("a", ["a", "b"], switches, held, connected)
    b_share = sorted(d for d, m in assign(switches, ["a", "b"], held).items() if m == "b")
    assert plan.release == (b_share[0],) and plan.claim == ()
    # b's own plan: it claims what is unheld and its own, never a held switch
    held.pop(b_share[0])
    assert plan_switches("b", ["a", "b"], switches, held, connected).claim == (b_share[0],)
