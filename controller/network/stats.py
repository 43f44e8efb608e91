"""OpenFlow statistics replies -> counters, rates and views per switch (core).

The app hands over the decoded reply bodies and the time they arrived; the rate state of
each switch lives in SwitchRates, which survives a switch's reconnects so that rate windows
are not lost to a short disconnect (a switch restart shows up as a counter reset).
"""

import dataclasses

import numpy as np

from controller.events import PORT_COUNTERS, FlowView, MeterStatsView, PortStatsView
from controller.network.rates import CounterRates, as_counters
from controller.openflow.messages import entry_from_stats
from controller.openflow.pipeline import FlowEntry

FLOW_COUNTERS = ("packets", "bytes")
UINT64_MAX = (1 << 64) - 1
METER_COUNTERS = ("packets_in", "bytes_in", "band_packets", "band_bytes")


@dataclasses.dataclass
class SwitchRates:
    """Rate state of one switch: flows, ports and meters."""

    flows: CounterRates
    ports: CounterRates
    meters: CounterRates

    @staticmethod
    def create(window: int) -> "SwitchRates":
        return SwitchRates(CounterRates(FLOW_COUNTERS, window), CounterRates(PORT_COUNTERS, window),
                           CounterRates(METER_COUNTERS, window))


def _durations(stats) -> np.ndarray:
    return np.fromiter((s.duration_sec + s.duration_nsec * 1e-9 for s in stats),
                       dtype=np.float64, count=len(stats))


def compute_flow_views(dpid: int, now: float, stats: list, rates: CounterRates
                       ) -> tuple[list[FlowEntry], tuple[FlowView, ...]]:
    """A complete flow stats reply -> (its FlowEntries, views with rates).

    Flows absent from the reply were removed and are forgotten by `rates`.
    """
    entries = [entry_from_stats(stat) for stat in stats]
    try:
        counters = np.fromiter((v for s in stats for v in (s.packet_count, s.byte_count)),
                               dtype=np.int64, count=2 * len(stats)).reshape(len(stats), 2)
    except OverflowError:  # a counter of 2^63 or more: "not supported"
        counters = as_counters(((s.packet_count, s.byte_count) for s in stats), 2)
    durations = _durations(stats)
    per_second = rates.update(now, entries, counters, durations, complete=True)
    views = tuple(
        FlowView(dpid, entry, stats[i].packet_count, stats[i].byte_count, float(durations[i]),
                 float(per_second[i, 1]), float(per_second[i, 0]))
        for i, entry in enumerate(entries))
    return entries, views


def compute_port_views(dpid: int, now: float, stats: list, rates: CounterRates
                       ) -> tuple[PortStatsView, ...]:
    """A complete port stats reply (physical ports only) -> views with rates."""
    raw = [tuple(getattr(s, name) for name in PORT_COUNTERS) for s in stats]
    counters = as_counters(raw, len(PORT_COUNTERS))
    per_second = rates.update(now, [s.port_no for s in stats], counters, _durations(stats),
                              complete=True)
    return tuple(PortStatsView(dpid, s.port_no, raw[i], tuple(float(r) for r in per_second[i]))
                 for i, s in enumerate(stats))


def compute_meter_views(dpid: int, now: float, stats: list, rates: CounterRates
                        ) -> tuple[MeterStatsView, ...]:
    """A complete meter stats reply -> views with rates (band counters summed over bands)."""
    raw = [(s.packet_in_count, s.byte_in_count,
            min(sum(b.packet_band_count for b in s.band_stats), UINT64_MAX),
            min(sum(b.byte_band_count for b in s.band_stats), UINT64_MAX)) for s in stats]
    counters = as_counters(raw, len(METER_COUNTERS))
    per_second = rates.update(now, [s.meter_id for s in stats], counters, _durations(stats),
                              complete=True)
    return tuple(MeterStatsView(dpid, s.meter_id, int(s.flow_count), raw[i],
                                tuple(float(r) for r in per_second[i]))
                 for i, s in enumerate(stats))
