"""OpenFlow statistics replies -> counters, rates and views per switch (core).

The app hands over the reply bodies, decoded from the wire (controller.openflow.wire_stats)
or by the framework, and the time they arrived; the rate state of
each switch lives in SwitchRates, which survives a switch's reconnects so that rate windows
are not lost to a short disconnect (a switch restart shows up as a counter reset).
"""

import dataclasses

import numpy as np

from controller.events import PORT_COUNTERS, FlowView, MeterStatsView, PortStatsView
from controller.network.rates import CounterRates
from controller.openflow.pipeline import FlowEntry
from controller.openflow.wire_stats import (OFPP_MAX, FlowStatsBatch, FlowStatsDecoder,
                                            MeterStatsBatch, PortStatsBatch)

FLOW_COUNTERS = ("packets", "bytes")
METER_COUNTERS = ("packets_in", "bytes_in", "band_packets", "band_bytes")


@dataclasses.dataclass
class SwitchRates:
    """Rate state of one switch: flows, ports and meters, and the wire decoder of its flow
    stats (which remembers the flows of its last reply)."""

    flows: CounterRates
    ports: CounterRates
    meters: CounterRates
    flow_decoder: FlowStatsDecoder = dataclasses.field(default_factory=FlowStatsDecoder)

    @staticmethod
    def create(window: int) -> "SwitchRates":
        return SwitchRates(CounterRates(FLOW_COUNTERS, window), CounterRates(PORT_COUNTERS, window),
                           CounterRates(METER_COUNTERS, window))


def compute_flow_views(dpid: int, now: float, stats, rates: CounterRates
                       ) -> tuple[list[FlowEntry], tuple[FlowView, ...]]:
    """A complete flow stats reply (a FlowStatsBatch from the wire decoder, or the
    framework's OFPFlowStats objects) -> (its FlowEntries, views with rates).

    Flows absent from the reply were removed and are forgotten by `rates`.
    """
    batch = stats if isinstance(stats, FlowStatsBatch) else FlowStatsBatch.from_parsed(stats)
    entries = batch.entries
    per_second = rates.update(now, entries, batch.counters, batch.durations, complete=True)
    durations, packets, bytes_ = batch.durations.tolist(), batch.packets, batch.bytes
    rate_rows = per_second.tolist()
    views = tuple(FlowView(dpid, entry, packets[i], bytes_[i], durations[i], rate_rows[i][1],
                           rate_rows[i][0])
                  for i, entry in enumerate(entries))
    return entries, views


def compute_port_views(dpid: int, now: float, stats, rates: CounterRates
                       ) -> tuple[PortStatsView, ...]:
    """A complete port stats reply (a PortStatsBatch, or the framework's OFPPortStats) ->
    views with rates of its physical ports (numbers up to OFPP_MAX)."""
    batch = stats if isinstance(stats, PortStatsBatch) else \
        PortStatsBatch.from_parsed(stats, PORT_COUNTERS)
    if any(port_no > OFPP_MAX for port_no in batch.port_nos):
        batch = batch.only(np.array(batch.port_nos) <= OFPP_MAX)
    per_second = rates.update(now, batch.port_nos, batch.counters, batch.durations,
                              complete=True)
    return tuple(PortStatsView(dpid, port_no, batch.raw[i], tuple(per_second[i].tolist()))
                 for i, port_no in enumerate(batch.port_nos))


def compute_meter_views(dpid: int, now: float, stats, rates: CounterRates
                        ) -> tuple[MeterStatsView, ...]:
    """A complete meter stats reply (a MeterStatsBatch, or the framework's OFPMeterStats) ->
    views with rates (band counters summed over bands)."""
    batch = stats if isinstance(stats, MeterStatsBatch) else MeterStatsBatch.from_parsed(stats)
    per_second = rates.update(now, batch.meter_ids, batch.counters, batch.durations,
                              complete=True)
    return tuple(MeterStatsView(dpid, meter_id, batch.flow_counts[i], batch.raw[i],
                                tuple(per_second[i].tolist()))
                 for i, meter_id in enumerate(batch.meter_ids))
