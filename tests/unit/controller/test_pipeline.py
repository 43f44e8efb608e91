import pytest
from hypothesis import given, strategies as st

from controller.openflow.messages import build_flow_add, build_flow_delete, entry_from_stats
from controller.compat import ofproto_v1_3_parser as parser
from controller.openflow.pipeline import (COOKIE_BASE, COOKIE_BASE_MASK, Component, FlowEntry,
                                          apply_diff, component_of, cookie_for, diff_flows)


def entry(dst: str, port: int, cookie_key: str = "k") -> FlowEntry:
    return FlowEntry.make(0, 1000, {"eth_dst": dst}, (("output", port),),
                          cookie_for(Component.FORWARDING, cookie_key + dst))


def test_cookies_are_stable_marked_and_name_their_component():
    a = cookie_for(Component.FORWARDING, "00:00:00:00:00:01>00:00:00:00:00:02")
    assert a == cookie_for(Component.FORWARDING, "00:00:00:00:00:01>00:00:00:00:00:02")
    assert a & COOKIE_BASE_MASK == COOKIE_BASE
    assert component_of(a) is Component.FORWARDING
    assert component_of(cookie_for(Component.CONTROL, "x")) is Component.CONTROL
    assert component_of(0) is None
    assert component_of(COOKIE_BASE | (0xFF << 40)) is None


@given(st.lists(st.text(min_size=1, max_size=30), min_size=2, max_size=200, unique=True))
def test_distinct_keys_get_distinct_cookies(keys):
    cookies = {cookie_for(Component.FORWARDING, k) for k in keys}
    assert len(cookies) == len(keys)


def test_table_declaration_refuses_undeclared_match_fields():
    with pytest.raises(ValueError, match="ipv4_dst"):
        FlowEntry.make(0, 1, {"ipv4_dst": "10.0.0.1"}, (), 0)


def test_diff_adds_missing_removes_stale_and_leaves_foreign_flows():
    keep, missing, stale = entry("aa:00:00:00:00:01", 1), entry("aa:00:00:00:00:02", 2), \
        entry("aa:00:00:00:00:03", 3)
    foreign = FlowEntry(0, 5, (("eth_dst", "aa:00:00:00:00:09"),), (), 0x1234)
    to_add, to_delete = diff_flows({keep, missing}, {keep, stale, foreign})
    assert to_add == [missing]
    assert to_delete == [stale]


def test_changed_actions_are_replaced_by_the_add_not_deleted():
    old, new = entry("aa:00:00:00:00:01", 1), entry("aa:00:00:00:00:01", 2)
    assert diff_flows({new}, {old}) == ([new], [])


def test_applying_the_diff_converges():
    desired = {entry(f"aa:00:00:00:00:{i:02x}", i) for i in range(10)}
    actual = {entry(f"aa:00:00:00:00:{i:02x}", i + 1) for i in range(5, 15)}
    to_add, to_delete = diff_flows(desired, actual)
    after = apply_diff(actual, to_add, to_delete)
    assert after == desired
    assert diff_flows(desired, after) == ([], [])


def test_flow_mod_round_trips_through_flow_stats_to_an_equal_entry():
    original = FlowEntry.make(0, 1000, {"eth_src": "AA:00:00:00:00:01", "eth_dst": "aa:00:00:00:00:02"},
                              (("set_queue", 2), ("output", 3), ("controller", 0xFFFF)),
                              cookie_for(Component.FORWARDING, "x"))
    mod = build_flow_add(original)
    stat = parser.OFPFlowStats(table_id=mod.table_id, priority=mod.priority, cookie=mod.cookie,
                               match=mod.match, instructions=mod.instructions, duration_sec=1,
                               duration_nsec=0, idle_timeout=0, hard_timeout=0, flags=0,
                               packet_count=0, byte_count=0)
    # Equal, so reconciliation sees the installed flow as the desired one.
    assert entry_from_stats(stat) == original


def test_delete_is_strict_on_cookie():
    mod = build_flow_delete(entry("aa:00:00:00:00:01", 1))
    assert mod.cookie_mask == 0xFFFFFFFFFFFFFFFF
    assert mod.command == 4  # OFPFC_DELETE_STRICT
