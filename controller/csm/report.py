"""The mapping function, back from the network: a customer's report for a period (core).

From the SLA, the SLS history, the availability log of the customer's access switch and port,
and the customer meter's counters and rates, it computes: hours per class and charges by the
variant's prices, availability against the SLA target, achieved throughput, the share of the
customer's traffic its own SLS policed away, and delay, jitter and network loss against the
class targets when measurements exist (they come from the probes; until then they are
reported unknown, never as a default-looking number).

Class targets follow ITU-T Y.1541 (12/2011) Table 1: Gold as QoS class 0 (IPTD 100 ms,
IPDV 50 ms, IPLR 1e-3), Silver as class 1 (IPTD 400 ms, IPDV 50 ms, IPLR 1e-3), Bronze as
class 5 (unspecified).
"""

import dataclasses
import math

from controller.csm.model import ServiceClass, Sla, Sls
from controller.csm.rules import charges, hours_per_class


@dataclasses.dataclass(frozen=True)
class ClassTarget:
    delay_ms: float | None
    jitter_ms: float | None
    loss_ratio: float | None
    source: str


CLASS_TARGETS = {
    ServiceClass.GOLD: ClassTarget(100.0, 50.0, 1e-3, "ITU-T Y.1541 Table 1, class 0"),
    ServiceClass.SILVER: ClassTarget(400.0, 50.0, 1e-3, "ITU-T Y.1541 Table 1, class 1"),
    ServiceClass.BRONZE: ClassTarget(None, None, None, "ITU-T Y.1541 Table 1, class 5"),
}


@dataclasses.dataclass(frozen=True)
class MeterReading:
    """The customer meter's counters since it was installed (at `time_unix_s`) and, for the
    latest reading, its rates."""

    packets_in: int
    bytes_in: int
    dropped_packets: int
    dropped_bytes: int
    bytes_in_per_second: float = math.nan
    dropped_bytes_per_second: float = math.nan
    time_unix_s: float = math.nan


@dataclasses.dataclass(frozen=True)
class CustomerReport:
    customer_id: str
    start_unix_s: float
    end_unix_s: float
    variant: str
    current: Sls
    hours: dict
    charges: dict
    total_charge: float
    availability: float | None        # None: nothing known about the access switch/port
    availability_target: float
    availability_met: bool | None
    throughput_bps: float | None      # what passed the meter, on average since throughput_since
    policed_ratio: float | None       # share of the customer's packets its SLS dropped, since
    delay_ms: float | None = None     # from probes; None until measured
    jitter_ms: float | None = None
    loss_ratio: float | None = None
    target: ClassTarget | None = None
    unknown: tuple[str, ...] = ()     # what could not be reported, and why
    throughput_since_unix_s: float | None = None  # where the throughput's window starts


def uptime_fraction(events: list[tuple[float, bool]], start_unix_s: float, end_unix_s: float
                    ) -> float | None:
    """Share of [start, end) that something was up, from its (time, up) events (sorted).

    The state at `start` is that of the last event before it. Time before the first event
    is not known and not counted (the share is of the known part); with no event before
    `end` nothing is known (None).
    """
    if not events:
        return None
    start_unix_s = max(start_unix_s, events[0][0])
    if end_unix_s <= start_unix_s:
        return None
    state, since, up_s = None, start_unix_s, 0.0
    for when, up in events:
        if when <= start_unix_s:
            state = up
            continue
        if when >= end_unix_s:
            break
        if state:
            up_s += when - since
        state, since = up, when
    if state:
        up_s += end_unix_s - since
    return up_s / (end_unix_s - start_unix_s)


def combined_availability(switch_events, port_events, start_unix_s, end_unix_s) -> float | None:
    """Both the access switch and its customer port up: the product is a lower bound when
    their outages do not overlap, exact when one of them never went down."""
    switch = uptime_fraction(switch_events, start_unix_s, end_unix_s)
    port = uptime_fraction(port_events, start_unix_s, end_unix_s)
    if switch is None and port is None:
        return None
    return (1.0 if switch is None else switch) * (1.0 if port is None else port)


def meter_figures(now: MeterReading, then: MeterReading | None
                  ) -> tuple[float | None, float | None, float | None, str]:
    """(throughput bit/s, policed share, window start, '' or why not) between a reading at
    the period's start (`then`) and the latest one. Without a usable earlier reading (none,
    or the meter was re-created: its counters went back) the latest rate is given instead."""
    if then is not None and now.time_unix_s > then.time_unix_s and \
            now.bytes_in >= then.bytes_in and now.packets_in >= then.packets_in:
        seconds = now.time_unix_s - then.time_unix_s
        passed = (now.bytes_in - now.dropped_bytes) - (then.bytes_in - then.dropped_bytes)
        packets = now.packets_in - then.packets_in
        policed = (now.dropped_packets - then.dropped_packets) / packets if packets else None
        return max(0.0, passed) * 8 / seconds, policed, then.time_unix_s, ""
    throughput = None
    if not math.isnan(now.bytes_in_per_second):
        throughput = max(0.0, now.bytes_in_per_second - now.dropped_bytes_per_second) * 8
    policed = now.dropped_packets / now.packets_in if now.packets_in else None
    return throughput, policed, None, ("throughput, policed_ratio: no reading of the meter "
                                       "from the period's start; the latest rate and the "
                                       "share since the meter was installed are given")


def compute_report(sla: Sla, history: list[Sls], start_unix_s: float, end_unix_s: float,
                   availability: float | None, meter: MeterReading | None,
                   meter_then: MeterReading | None = None) -> CustomerReport:
    """Everything the report says, from plain inputs (no I/O). `meter` is the latest reading
    of the customer's meter, `meter_then` the one from the period's start (or the first after
    it): the throughput and policed share are over the time between."""
    if end_unix_s <= start_unix_s:
        raise ValueError(f"the period must end after it starts ({start_unix_s} .. {end_unix_s})")
    if not history:
        raise ValueError(f"customer {sla.customer_id} has no SLS")
    hours = hours_per_class(history, start_unix_s, end_unix_s)
    bill = charges(sla.variant, hours)
    current = history[-1]
    unknown = ["delay_ms, jitter_ms, loss_ratio: no probe measurements for this customer yet"]
    throughput = policed = since = None
    if meter is None:
        unknown.append("throughput, policed_ratio: the customer's meter has no statistics yet")
    else:
        throughput, policed, since, why = meter_figures(meter, meter_then)
        if why:
            unknown.append(why)
    if availability is None:
        unknown.append("availability: no up/down record of the access switch and port")
    return CustomerReport(
        sla.customer_id, start_unix_s, end_unix_s, sla.variant, current, hours, bill,
        round(sum(bill.values()), 6), availability, sla.availability_target,
        None if availability is None else availability >= sla.availability_target,
        throughput, policed, target=CLASS_TARGETS[current.service_class], unknown=tuple(unknown),
        throughput_since_unix_s=since)
