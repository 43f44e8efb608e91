"""What the probes measured of one customer over a report's period (core).

From the customer's probe records that the controller still holds (the KPI store keeps them
for kpi.max_age_s and within kpi.max_bytes, so a month's report covers the recent part of
the month, and says from when), the figures a report compares with the class targets:

- loss_ratio: RTP packets lost over packets expected, summed over the period's voice
  records (the network loss a customer's calls saw); without RTP, MPEG-TS packets lost over
  packets expected (from continuity-counter gaps);
- jitter_ms: the largest RFC 3550 interarrival-jitter estimate of the period. Y.1541's IPDV
  is the 1 - 1e-3 quantile of delay variation; the probe does not measure one-way delay
  variation, and the jitter estimate's peak is the nearest figure it has (an estimate that
  smooths over 16 packets, so it stays below a single packet's worst variation);
- delay_ms: the customer's current one-way delay estimate (controller.monitor.quality:
  a STAMP test on its path, else its TCP flows' round-trip time halved), with its source;
- quality per service (voice, IPTV) from the same records with the models of
  controller.monitor.quality: how many intervals, mean, worst, 5th percentile and the time
  below the service's target (qoe.aggregate). Web and video quality come from sessions the
  applications report, which are kept for the experience view only (60 s), not for reports.
"""

import dataclasses
import math
from typing import Iterable, Mapping

import numpy as np

from controller.monitor.experience import Target, target_for
from controller.monitor.quality import DelayEstimate, QualitySettings, quality_of
from qoe.aggregate import aggregate_windows

REPORTED_SERVICES = ("voice", "iptv")


@dataclasses.dataclass(frozen=True)
class ServicePeriod:
    service: str
    scale: str
    model: str
    intervals: int            # with a known score
    unknown: int              # intervals whose quality was unknown
    mean: float               # NaN without known scores
    worst: float
    p5: float
    time_below_target_s: float
    target: Target
    bound: str                # "upper" when any score was an upper bound


@dataclasses.dataclass(frozen=True)
class PeriodMeasurements:
    since_unix_s: float       # the earliest record used
    until_unix_s: float
    loss_ratio: float | None
    loss_source: str
    jitter_ms: float | None
    delay_ms: float | None
    delay_source: str
    services: tuple[ServicePeriod, ...]


def _number(value) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def measure_period(records: Iterable, start_unix_s: float, end_unix_s: float,
                   delay: DelayEstimate | None, settings: QualitySettings,
                   targets: Mapping, service_class: str) -> PeriodMeasurements | None:
    """The figures of the records whose interval lies within the period (None: there are
    none and no delay estimate either)."""
    chosen = [r for r in records if r.interval_start_unix_s >= start_unix_s
              and r.interval_end_unix_s <= end_unix_s]
    if not chosen and delay is None:
        return None
    lost = {"rtp": 0.0, "mpegts": 0.0}
    expected = {"rtp": 0.0, "mpegts": 0.0}
    jitter = None
    for record in chosen:
        kpis = record.kpis
        if record.kind == "rtp":
            got_lost, got_expected = (_number(kpis.get(k)) for k in ("rtp_lost", "rtp_expected"))
            peak = _number(kpis.get("rtp_jitter_max_ms", kpis.get("rtp_jitter_ms")))
            if peak is not None:
                jitter = peak if jitter is None else max(jitter, peak)
        elif record.kind == "mpegts":
            got_lost, got_expected = (_number(kpis.get(k)) for k in ("ts_lost_packets",
                                                                      "ts_packets"))
            if got_lost is not None and got_expected is not None:
                got_expected += got_lost   # ts_packets counts what arrived
        else:
            continue
        if got_lost is not None and got_expected:
            lost[record.kind] += got_lost
            expected[record.kind] += got_expected
    loss, loss_source = None, ""
    for kind, what in (("rtp", "RTP sequence numbers"), ("mpegts", "MPEG-TS continuity")):
        if expected[kind]:
            loss, loss_source = lost[kind] / expected[kind], what
            break
    services = []
    for service in REPORTED_SERVICES:
        rows = [(quality_of(r, delay, settings), r) for r in chosen if r.service == service]
        rows = [(q, r) for q, r in rows if q is not None]
        if not rows:
            continue
        target = target_for(targets, service, service_class)
        scores = np.array([q.score if q.known else math.nan for q, _ in rows])
        spans = np.array([max(0.0, r.interval_end_unix_s - r.interval_start_unix_s)
                          for _, r in rows])
        agg = aggregate_windows(np.zeros(len(rows)), np.zeros(len(rows)), np.zeros(len(rows)),
                                scores, spans, 1e12, target.minimum)
        known = [q for q, _ in rows if q.known]
        services.append(ServicePeriod(
            service, rows[0][0].scale, known[0].model if known else rows[0][0].model,
            int(agg.count[0]), int(agg.unknown[0]), float(agg.mean[0]), float(agg.worst[0]),
            float(agg.percentiles[0][0]), float(agg.time_below_s[0]), target,
            "upper" if any(q.bound == "upper" for q in known) else ""))
    return PeriodMeasurements(
        min((r.interval_start_unix_s for r in chosen), default=start_unix_s),
        max((r.interval_end_unix_s for r in chosen), default=end_unix_s),
        loss, loss_source, jitter, delay.one_way_ms if delay is not None else None,
        delay.source if delay is not None else "", tuple(services))
