import math
import struct

import pytest

from controller.compat import ofproto_v1_3 as ofp
from controller.compat import ofproto_v1_3_parser as parser
from controller.events import PORT_COUNTERS
from controller.network.stats import (SwitchRates, compute_flow_views, compute_meter_views,
                                      compute_port_views)
from controller.openflow.messages import build_flow_add, describe_error
from controller.openflow.wire_stats import decode_port_stats
from controller.openflow.pipeline import Component, FlowEntry, cookie_for


def flow_stat(entry: FlowEntry, packets: int, bytes_: int, duration_s: float):
    mod = build_flow_add(entry)
    return parser.OFPFlowStats(table_id=0, priority=entry.priority, cookie=entry.cookie,
                               match=mod.match, instructions=mod.instructions,
                               duration_sec=int(duration_s),
                               duration_nsec=int((duration_s % 1) * 1e9), idle_timeout=0,
                               hard_timeout=0, flags=0, packet_count=packets, byte_count=bytes_)


ENTRY = FlowEntry.make(0, 1000, {"eth_dst": "00:00:00:00:00:02"}, (("output", 2),),
                       cookie_for(Component.FORWARDING, "a"))
OTHER = FlowEntry.make(0, 1000, {"eth_dst": "00:00:00:00:00:03"}, (("output", 3),),
                       cookie_for(Component.FORWARDING, "b"))


def test_flow_views_carry_rates_and_removed_flows_are_forgotten():
    rates = SwitchRates.create(window=10)
    _, first = compute_flow_views(7, 100.0, [flow_stat(ENTRY, 10, 1000, 5.0),
                                             flow_stat(OTHER, 1, 100, 5.0)], rates.flows)
    assert all(math.isnan(v.bytes_per_second) for v in first)
    entries, views = compute_flow_views(7, 101.0, [flow_stat(ENTRY, 110, 126000, 6.0)], rates.flows)
    assert entries == [ENTRY]
    (view,) = views
    assert (view.dpid, view.entry, view.packet_count, view.byte_count) == (7, ENTRY, 110, 126000)
    assert view.bytes_per_second == pytest.approx(125000.0)
    assert view.packets_per_second == pytest.approx(100.0)
    assert OTHER not in rates.flows and len(rates.flows) == 1


def test_port_views_rates_per_counter():
    def port(rx_bytes, duration):
        return parser.OFPPortStats(port_no=1, rx_packets=rx_bytes // 100, tx_packets=0,
                                   rx_bytes=rx_bytes, tx_bytes=0, rx_dropped=0, tx_dropped=0,
                                   rx_errors=0, tx_errors=0, rx_frame_err=0, rx_over_err=0,
                                   rx_crc_err=0, collisions=0, duration_sec=duration,
                                   duration_nsec=0)
    rates = SwitchRates.create(window=10)
    compute_port_views(1, 0.0, [port(1000, 10)], rates.ports)
    (view,) = compute_port_views(1, 2.0, [port(3000, 12)], rates.ports)
    assert view.counters[2] == 3000
    assert view.rates[2] == pytest.approx(1000.0) and view.rates[0] == pytest.approx(10.0)


def test_meter_views_sum_band_drops():
    def meter(packets_in, dropped, duration):
        bands = [parser.OFPMeterBandStats(packet_band_count=dropped, byte_band_count=dropped * 1000)]
        return parser.OFPMeterStats(meter_id=3, flow_count=1, packet_in_count=packets_in,
                                    byte_in_count=packets_in * 1000, duration_sec=duration,
                                    duration_nsec=0, band_stats=bands)
    rates = SwitchRates.create(window=10)
    compute_meter_views(1, 0.0, [meter(100, 10, 5)], rates.meters)
    (view,) = compute_meter_views(1, 1.0, [meter(600, 410, 6)], rates.meters)
    assert view.counters == (600, 600000, 410, 410000)
    assert view.rates[2] == pytest.approx(400.0)


def test_error_names():
    assert describe_error(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL) == \
        ("OFPET_FLOW_MOD_FAILED", "OFPFMFC_TABLE_FULL")
    assert describe_error(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT) == \
        ("OFPET_BAD_ACTION", "OFPBAC_BAD_OUT_PORT")
    assert describe_error(200, 9) == ("type200", "code9")


ALL_ONES = (1 << 64) - 1  # OpenFlow's "not supported"; also what removed interfaces report


def test_counters_of_all_ones_are_unknown_not_an_overflow_and_rates_go_on_after_them():
    def port(port_no, rx_bytes, duration):
        return parser.OFPPortStats(port_no=port_no, rx_packets=0, tx_packets=0,
                                   rx_bytes=rx_bytes, tx_bytes=ALL_ONES, rx_dropped=0,
                                   tx_dropped=0, rx_errors=0, tx_errors=0, rx_frame_err=0,
                                   rx_over_err=0, rx_crc_err=0, collisions=0,
                                   duration_sec=duration, duration_nsec=0)
    rates = SwitchRates.create(window=10)
    compute_port_views(1, 0.0, [port(1, 1000, 10), port(2, 1000, 10)], rates.ports)
    gone, alive = compute_port_views(1, 1.0, [port(1, ALL_ONES, 11), port(2, 3000, 11)],
                                     rates.ports)
    assert gone.counters[2] == ALL_ONES and math.isnan(gone.rates[2])  # unknown, shown as sent
    assert alive.rates[2] == pytest.approx(2000.0) and math.isnan(alive.rates[3])
    _, alive = compute_port_views(1, 2.0, [port(1, 1500, 12), port(2, 5000, 12)], rates.ports)
    assert alive.rates[2] == pytest.approx(2000.0)
    # a flow reporting all ones, and a meter whose bands sum above 64 bits
    _, views = compute_flow_views(7, 0.0, [flow_stat(ENTRY, ALL_ONES, ALL_ONES, 1.0)],
                                  SwitchRates.create(window=10).flows)
    assert views[0].packet_count == ALL_ONES and math.isnan(views[0].bytes_per_second)
    bands = [parser.OFPMeterBandStats(packet_band_count=ALL_ONES, byte_band_count=ALL_ONES)] * 2
    meter = parser.OFPMeterStats(meter_id=3, flow_count=1, packet_in_count=5, byte_in_count=500,
                                 duration_sec=1, duration_nsec=0, band_stats=bands)
    (view,) = compute_meter_views(1, 0.0, [meter], SwitchRates.create(window=10).meters)
    assert view.counters == (5, 500, ALL_ONES, ALL_ONES)


def test_port_views_leave_out_the_local_and_other_reserved_ports_as_decoded_from_the_wire():
    def wire(port_no, rx_bytes):
        return struct.pack("!I4x12QII", port_no, 0, 0, rx_bytes, *[0] * 9, 10, 0)
    data = wire(1, 1000) + wire(ofp.OFPP_LOCAL, 5000) + wire(2, 2000)
    views = compute_port_views(1, 0.0, decode_port_stats([data], PORT_COUNTERS),
                               SwitchRates.create(window=10).ports)
    assert [(v.port_no, v.counters[2]) for v in views] == [(1, 1000), (2, 2000)]
