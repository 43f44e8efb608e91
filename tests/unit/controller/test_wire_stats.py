"""The wire decoder of flow, port and meter stats against the framework's parser on the same
bytes (controller/openflow/wire_stats.py): the same FlowEntries, counters and durations,
unknown match fields, instructions and actions included; bad bytes raise StatsDecodeError."""

import ipaddress
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from controller.compat import ofproto_v1_3 as ofp
from controller.compat import ofproto_v1_3_parser as parser
from controller.events import PORT_COUNTERS
from controller.openflow import wire_stats
from controller.openflow.messages import build_flow_add, entry_from_stats
from controller.openflow.pipeline import Component, FlowEntry, cookie_for
from controller.openflow.wire_stats import (FlowStatsBatch, FlowStatsDecoder, MeterStatsBatch,
                                            PortStatsBatch, StatsDecodeError)

_HEAD = "!HBxIIHHHH4xQQQ"


def wire_entry(match, instructions, table=0, priority=100, cookie=1, packets=0, bytes_=0,
               seconds=0, nanoseconds=0) -> bytes:
    """One ofp_flow_stats as a switch sends it, from the framework's own serialisers."""
    body = bytearray()
    match.serialize(body, 0)
    for instruction in instructions:
        instruction.serialize(body, len(body))
    return struct.pack(_HEAD, struct.calcsize(_HEAD) + len(body), table, seconds, nanoseconds,
                       priority, 0, 0, 0, cookie, packets, bytes_) + bytes(body)


def framework(data: bytes) -> FlowStatsBatch:
    """What the framework's parser and entry_from_stats make of the same body."""
    stats, offset = [], 0
    while offset < len(data):
        stat = parser.OFPFlowStats.parser(data, offset)
        stats.append(stat)
        offset += stat.length
    return FlowStatsBatch.from_parsed(stats)


def assert_same(ours: FlowStatsBatch, theirs: FlowStatsBatch) -> None:
    assert ours.entries == theirs.entries
    assert ours.packets == theirs.packets and ours.bytes == theirs.bytes
    assert ours.counters.dtype == np.int64
    assert np.array_equal(ours.counters, theirs.counters)
    assert np.array_equal(ours.durations, theirs.durations)


macs = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
ipv4s = st.integers(0, 2 ** 32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6s = st.integers(0, 2 ** 128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))


def maybe_masked(values):
    return st.one_of(values, st.tuples(values, values))


MATCH_FIELDS = {
    "in_port": st.integers(1, 2 ** 32 - 1),
    "eth_dst": maybe_masked(macs), "eth_src": maybe_masked(macs),
    "eth_type": st.sampled_from([0x0800, 0x86DD, 0x0806, 0x88CC]),
    "vlan_vid": maybe_masked(st.integers(0, 0x1FFF)),
    "ip_dscp": st.integers(0, 63), "ip_proto": st.sampled_from([1, 6, 17, 58]),
    "ipv4_src": maybe_masked(ipv4s), "ipv4_dst": maybe_masked(ipv4s),
    "ipv6_src": maybe_masked(ipv6s), "ipv6_dst": ipv6s,
    "udp_dst": st.integers(0, 65535), "tcp_src": st.integers(0, 65535),
    "metadata": maybe_masked(st.integers(0, 2 ** 64 - 1)),
    "mpls_label": st.integers(0, 2 ** 20 - 1),
    # not OpenFlow basic (ONF and Nicira classes): left to the framework
    "tcp_flags": st.integers(0, 0xFFF), "xreg0": st.integers(0, 2 ** 32 - 1),
}

SET_FIELDS = {"eth_dst": macs, "eth_src": macs, "ipv4_dst": ipv4s, "ip_dscp": st.integers(0, 63),
              "vlan_vid": st.integers(0, 0x1FFF), "ipv6_src": ipv6s}


@st.composite
def matches(draw):
    names = draw(st.lists(st.sampled_from(sorted(MATCH_FIELDS)), unique=True, max_size=6))
    return parser.OFPMatch(**{name: draw(MATCH_FIELDS[name]) for name in names})


@st.composite
def actions(draw):
    kind = draw(st.sampled_from(["output", "controller", "set_field", "set_queue", "group",
                                 "push_vlan", "pop_vlan", "dec_nw_ttl"]))
    if kind == "output":
        return parser.OFPActionOutput(draw(st.integers(1, ofp.OFPP_MAX)))
    if kind == "controller":
        return parser.OFPActionOutput(ofp.OFPP_CONTROLLER, draw(st.integers(0, 0xFFFF)))
    if kind == "set_field":
        name = draw(st.sampled_from(sorted(SET_FIELDS)))
        return parser.OFPActionSetField(**{name: draw(SET_FIELDS[name])})
    if kind == "set_queue":
        return parser.OFPActionSetQueue(draw(st.integers(0, 2 ** 32 - 1)))
    if kind == "group":
        return parser.OFPActionGroup(draw(st.integers(0, 100)))
    if kind == "push_vlan":
        return parser.OFPActionPushVlan(0x8100)
    if kind == "pop_vlan":
        return parser.OFPActionPopVlan()
    return parser.OFPActionDecNwTtl()


@st.composite
def instructions(draw):
    kind = draw(st.sampled_from(["apply", "write", "goto", "meter", "metadata", "clear"]))
    if kind in ("apply", "write"):
        return parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS if kind == "apply" else ofp.OFPIT_WRITE_ACTIONS,
            draw(st.lists(actions(), max_size=4)))
    if kind == "goto":
        return parser.OFPInstructionGotoTable(draw(st.integers(0, 254)))
    if kind == "meter":
        return parser.OFPInstructionMeter(draw(st.integers(1, 2 ** 32 - 1)), ofp.OFPIT_METER)
    if kind == "metadata":
        return parser.OFPInstructionWriteMetadata(draw(st.integers(0, 2 ** 64 - 1)),
                                                  draw(st.integers(0, 2 ** 64 - 1)))
    return parser.OFPInstructionActions(ofp.OFPIT_CLEAR_ACTIONS, [])


counters64 = st.one_of(st.integers(0, 2 ** 40), st.integers(2 ** 63 - 2, 2 ** 64 - 1))


@st.composite
def flow_entries(draw):
    return wire_entry(draw(matches()), draw(st.lists(instructions(), max_size=3)),
                      table=draw(st.integers(0, 254)), priority=draw(st.integers(0, 65535)),
                      cookie=draw(st.integers(0, 2 ** 64 - 1)), packets=draw(counters64),
                      bytes_=draw(counters64), seconds=draw(st.integers(0, 2 ** 32 - 1)),
                      nanoseconds=draw(st.integers(0, 999_999_999)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(flow_entries(), max_size=6))
def test_flow_stats_decode_as_the_framework_parses_them(entries):
    data = b"".join(entries)
    expected = framework(data)
    decoder = FlowStatsDecoder()
    assert_same(decoder.decode([data]), expected)
    assert_same(decoder.decode([data]), expected)  # the second poll, from what it remembers
    # the same reply split into parts, as a switch splits a long one
    middle = sum(len(e) for e in entries[:len(entries) // 2])
    assert_same(FlowStatsDecoder().decode([data[:middle], data[middle:]]), expected)


def test_cems_flows_decode_without_the_framework_and_are_remembered():
    entries = [
        FlowEntry.make(0, 1000, {"eth_dst": "00:00:00:00:00:02", "in_port": 3},
                       (("output", 2),), cookie_for(Component.FORWARDING, "a")),
        FlowEntry(1, 1600, (("eth_type", 0x0800), ("ip_dscp", 0), ("ipv4_src", "10.0.0.1")),
                  (("meter", 7), ("apply_actions", (("set_field", "ip_dscp", 46),
                                                    ("set_queue", 1), ("output", 4)))),
                  cookie_for(Component.FORWARDING, "b")),
        FlowEntry(0, 0, (), (("apply_actions", (("controller", 65535),)),),
                  cookie_for(Component.FORWARDING, "c")),
        FlowEntry(0, 10, (("eth_type", 0x88CC),), (("goto_table", 1),),
                  cookie_for(Component.FORWARDING, "d")),
    ]
    data = b"".join(wire_entry(build_flow_add(e).match, build_flow_add(e).instructions,
                               e.table_id, e.priority, e.cookie, packets=i, bytes_=i * 100)
                    for i, e in enumerate(entries))
    decoder = FlowStatsDecoder()
    batch = decoder.decode([data])
    assert batch.entries == entries
    assert (decoder.decoded, decoder.framework) == (4, 0)
    assert decoder.last == {"remembered": 0, "decoded": 4, "framework": 0}
    again = decoder.decode([data])
    assert again.entries == entries and decoder.decoded == 4  # nothing decoded twice
    assert decoder.last == {"remembered": 4, "decoded": 0, "framework": 0}
    assert batch.packets == [0, 1, 2, 3] and batch.counters[:, 1].tolist() == [0, 100, 200, 300]


def test_unknown_instructions_are_left_to_the_framework():
    data = wire_entry(parser.OFPMatch(in_port=1),
                      [parser.OFPInstructionWriteMetadata(5, 0xFF),
                       parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                    [parser.OFPActionGroup(3)])])
    decoder = FlowStatsDecoder()
    (entry,) = decoder.decode([data]).entries
    assert decoder.framework == 1 and decoder.last["framework"] == 1
    assert entry == framework(data).entries[0]
    assert ("unknown", "OFPInstructionWriteMetadata") in entry.instructions


def test_removed_flows_are_forgotten_at_the_next_reply():
    one = wire_entry(parser.OFPMatch(in_port=1), [], cookie=1)
    two = wire_entry(parser.OFPMatch(in_port=2), [], cookie=2)
    decoder = FlowStatsDecoder()
    decoder.decode([one + two])
    decoder.decode([two])
    assert len(decoder._known) == 1  # pylint: disable=protected-access


@pytest.mark.parametrize("cut", [1, 10, 47, 50, 60])
def test_a_truncated_flow_entry_is_a_clear_error(cut):
    data = wire_entry(parser.OFPMatch(eth_dst="00:00:00:00:00:01"),
                      [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                    [parser.OFPActionOutput(2)])])
    with pytest.raises(StatsDecodeError, match="byte 0"):
        FlowStatsDecoder().decode([data[:len(data) - cut]])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 150))
def test_corrupted_flow_stats_raise_only_the_decode_error(noise, position):
    data = bytearray(wire_entry(parser.OFPMatch(eth_dst="00:00:00:00:00:01", in_port=2),
                                [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                              [parser.OFPActionOutput(2)])]))
    data[position:position + len(noise)] = noise
    try:
        FlowStatsDecoder().decode([bytes(data)])
    except StatsDecodeError:
        pass


def wire_port(port_no: int, values: list[int], seconds=3, nanoseconds=500_000_000) -> bytes:
    stat = parser.OFPPortStats(port_no, *values, seconds, nanoseconds)
    return struct.pack("!I4x12QII", port_no, *values, seconds, nanoseconds), stat


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, ofp.OFPP_MAX),
                          st.lists(counters64, min_size=12, max_size=12)), max_size=5))
def test_port_stats_decode_as_the_framework_parses_them(ports):
    wires = [wire_port(p, values) for p, values in ports]
    data = b"".join(w for w, _ in wires)
    parsed, offset = [], 0
    while offset < len(data):
        parsed.append(parser.OFPPortStats.parser(data, offset))
        offset += 112
    ours = wire_stats.decode_port_stats([data], PORT_COUNTERS)
    theirs = PortStatsBatch.from_parsed(parsed, PORT_COUNTERS)
    assert ours.port_nos == theirs.port_nos and ours.raw == theirs.raw
    assert np.array_equal(ours.counters, theirs.counters)
    assert np.allclose(ours.durations, theirs.durations)


def test_a_port_stats_body_of_partial_entries_is_a_clear_error():
    data, _ = wire_port(1, [0] * 12)
    with pytest.raises(StatsDecodeError, match="112-byte"):
        wire_stats.decode_port_stats([data[:-1]], PORT_COUNTERS)


def wire_meter(meter_id, flow_count, packets, bytes_, bands) -> bytes:
    body = b"".join(struct.pack("!QQ", p, b) for p, b in bands)
    return struct.pack("!IH6xIQQII", meter_id, 40 + len(body), flow_count, packets, bytes_, 7,
                       250_000_000) + body


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2 ** 32 - 1), st.integers(0, 2 ** 32 - 1), counters64,
                          counters64, st.lists(st.tuples(counters64, counters64), max_size=3)),
                max_size=4))
def test_meter_stats_decode_as_the_framework_parses_them(meters):
    data = b"".join(wire_meter(*m) for m in meters)
    parsed, offset = [], 0
    while offset < len(data):
        stat = parser.OFPMeterStats.parser(data, offset)
        parsed.append(stat)
        offset += stat.len
    ours = wire_stats.decode_meter_stats([data])
    theirs = MeterStatsBatch.from_parsed(parsed)
    assert (ours.meter_ids, ours.flow_counts, ours.raw) == \
        (theirs.meter_ids, theirs.flow_counts, theirs.raw)
    assert np.array_equal(ours.counters, theirs.counters)
    assert np.array_equal(ours.durations, theirs.durations)


def test_the_framework_hands_raw_bodies_over_once_installed():
    data = wire_entry(parser.OFPMatch(in_port=1), [], cookie=5, packets=9)
    message = struct.pack("!BBHIHH4x", ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY,
                          16 + len(data), 7, ofp.OFPMP_FLOW, 0) + data

    class Datapath:
        ofproto, ofproto_parser = ofp, parser

    def parse():
        return parser.OFPMultipartReply.parser(Datapath(), ofp.OFP_VERSION,
                                                ofp.OFPT_MULTIPART_REPLY, len(message), 7,
                                                message)
    assert isinstance(parse().body[0], parser.OFPFlowStats)
    wire_stats.install_raw_stats()
    try:
        reply = parse()
        assert type(reply).__name__ == "OFPFlowStatsReply"  # the same event reaches the app
        assert wire_stats.is_raw(reply.body) and reply.body[0].data == data
        assert FlowStatsDecoder().decode([b.data for b in reply.body]).entries == \
            [entry_from_stats(parser.OFPFlowStats.parser(data, 0))]
    finally:
        wire_stats.uninstall_raw_stats()
    assert isinstance(parse().body[0], parser.OFPFlowStats)
