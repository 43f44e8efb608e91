"""The mapping function, back from the network: a customer's report for a period (core).

From the SLA, the SLS history, the availability log of the customer's access switch and port,
and the customer meter's counters and rates, it computes: hours per class and charges by the
variant's prices, availability against the SLA target, achieved throughput, the share of the
customer's traffic its own SLS policed away, and delay, jitter, network loss and quality per
service against the class targets when measurements exist (controller.monitor.period, from
the probes' records; until then they are reported unknown, never as a default-looking
number), with the ones that miss their target named in `not_met`.

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
    delay_source: str = ""
    measured_since_unix_s: float | None = None  # the earliest probe record the figures use
    quality: tuple = ()               # controller.monitor.period.ServicePeriod per service
    not_met: tuple[str, ...] = ()     # measured figures that miss their target, with both


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


def _measured(measured, target: ClassTarget) -> tuple[list[str], list[str]]:
    """(what is unknown, what misses its target) of the probes' figures."""
    unknown, not_met = [], []
    if measured is None:
        return ["delay_ms, jitter_ms, loss_ratio, quality: no probe measurements for this "
                "customer in the period"], []
    for name, value, limit, unit in (
            ("delay_ms", measured.delay_ms, target.delay_ms, " ms"),
            ("jitter_ms", measured.jitter_ms, target.jitter_ms, " ms"),
            ("loss_ratio", measured.loss_ratio, target.loss_ratio, "")):
        if value is None:
            unknown.append(f"{name}: not measured for this customer in the period"
                           + (" (no STAMP test on its path and no TCP flow of its own)"
                              if name == "delay_ms" else " (no voice or IPTV flow probed)"))
        elif limit is not None and value > limit:
            not_met.append(f"{name} {value:.4g}{unit} above the target {limit:g}{unit} "
                           f"({target.source})")
    if measured.delay_ms is None and measured.services:
        unknown.append("voice quality: an upper bound (the one-way delay is not measured)")
    for service in measured.services:
        if service.intervals and service.mean < service.target.minimum:
            not_met.append(f"{service.service} quality: mean {service.mean:.2f} {service.scale} "
                           f"below the target {service.target.minimum:g} "
                           f"({service.target.source})")
    return unknown, not_met


def compute_report(sla: Sla, history: list[Sls], start_unix_s: float, end_unix_s: float,
                   availability: float | None, meter: MeterReading | None,
                   meter_then: MeterReading | None = None, measured=None) -> CustomerReport:
    """Everything the report says, from plain inputs (no I/O). `meter` is the latest reading
    of the customer's meter, `meter_then` the one from the period's start (or the first after
    it): the throughput and policed share are over the time between. `measured` is what the
    probes measured in the period (controller.monitor.period.PeriodMeasurements, or None)."""
    if end_unix_s <= start_unix_s:
        raise ValueError(f"the period must end after it starts ({start_unix_s} .. {end_unix_s})")
    if not history:
        raise ValueError(f"customer {sla.customer_id} has no SLS")
    hours = hours_per_class(history, start_unix_s, end_unix_s)
    bill = charges(sla.variant, hours)
    current = history[-1]
    target = CLASS_TARGETS[current.service_class]
    unknown, not_met = _measured(measured, target)
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
        throughput, policed,
        delay_ms=measured.delay_ms if measured else None,
        jitter_ms=measured.jitter_ms if measured else None,
        loss_ratio=measured.loss_ratio if measured else None,
        target=target, unknown=tuple(unknown), throughput_since_unix_s=since,
        delay_source=measured.delay_source if measured else "",
        measured_since_unix_s=measured.since_unix_s if measured else None,
        quality=measured.services if measured else (), not_met=tuple(not_met))
