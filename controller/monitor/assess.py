"""From what arrives to quality samples: probe records and application reports (core).

The Assessor is called with the records the KpiStore accepted (joined with customer and
service) and with the sessions applications report (web page loads, video sessions), and
adds a quality sample per customer and service to the ExperienceBook:

- voice and IPTV: one sample per record (controller.monitor.quality), with the customer's
  latest one-way delay: from its STAMP records (kept 5 minutes), else the mean RTT of its
  latest TCP records;
- bulk: the throughput of the customer's bulk flows in one export, summed, against its SLS
  rate: one sample per export batch;
- web and video: one sample per reported session.

The customer's class, segment and SLS rate come from the CustomerDirectory. Thread-safe.
"""

import collections
import dataclasses
import math
import threading
import time

from controller.monitor.experience import ExperienceBook
from controller.monitor.period import measure_period
from controller.monitor.quality import (DelayEstimate, QualitySettings, bulk_quality,
                                        one_way_delay, quality_of, video_quality, web_quality)

STAMP_FRESH_S = 300.0
TCP_SAMPLES = 20


@dataclasses.dataclass(frozen=True)
class SessionReport:
    """What an application reports of one session (a page load, a video played)."""

    customer_id: str
    service: str                      # "web" or "video"
    page_load_s: float | None = None  # web
    stalls: int | None = None         # video
    mean_stall_s: float | None = None
    initial_delay_s: float | None = None
    bitrate_bps: float | None = None


class Assessor:
    def __init__(self, book: ExperienceBook, directory, settings: QualitySettings | None = None,
                 clock=time.time):
        self.book = book
        self.directory = directory  # controller.monitor.directory.CustomerDirectory
        self.settings = settings or QualitySettings()
        self.clock = clock
        self._lock = threading.Lock()
        self._stamp: dict[str, tuple[float, object]] = {}     # customer -> (when, record)
        self._tcp: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=TCP_SAMPLES))

    def _profile(self, customer_id: str) -> tuple[str, str, int | None]:
        state = self.directory.state(customer_id)
        if state is None:
            return "", "", None
        return state.sls.service_class.value, state.customer.segment, state.sls.rate_bps

    def delay_of(self, customer_id: str, now: float) -> DelayEstimate | None:
        with self._lock:
            stamp = self._stamp.get(customer_id)
            records = list(self._tcp.get(customer_id, ()))
        if stamp is not None and now - stamp[0] <= STAMP_FRESH_S:
            records.append(stamp[1])
        return one_way_delay(records)

    def period(self, records, customer_id: str, service_class: str, start_unix_s: float,
               end_unix_s: float):
        """What the probes measured of the customer in a period, from its stored records
        (controller.monitor.period), with its delay estimate of now and the book's targets."""
        return measure_period(records, start_unix_s, end_unix_s,
                              self.delay_of(customer_id, self.clock()), self.settings,
                              self.book.targets, service_class)

    def records(self, records) -> int:
        """Accepted probe records -> quality samples; returns how many were added."""
        now = self.clock()
        bulk: dict[str, float] = collections.defaultdict(float)
        spans: dict[str, float] = {}
        with self._lock:
            for record in records:
                if not record.customer_id:
                    continue
                if record.kind == "stamp":
                    self._stamp[record.customer_id] = (now, record)
                elif record.kind == "tcp" and not math.isnan(record.kpis.get("tcp_rtt_ms",
                                                                              math.nan)):
                    self._tcp[record.customer_id].append(record)
        added = 0
        for record in records:
            if not record.customer_id:
                continue
            span = max(0.0, record.interval_end_unix_s - record.interval_start_unix_s)
            if record.service == "bulk":
                bulk[record.customer_id] += record.throughput_bps
                spans[record.customer_id] = max(spans.get(record.customer_id, 0.0), span)
                continue
            quality = quality_of(record, self.delay_of(record.customer_id, now), self.settings)
            if quality is None:
                continue
            service_class, segment, _ = self._profile(record.customer_id)
            self.book.add(record.customer_id, record.service, quality, now, span,
                          service_class, segment)
            added += 1
        for customer_id, throughput in bulk.items():
            service_class, segment, rate = self._profile(customer_id)
            self.book.add(customer_id, "bulk", bulk_quality(throughput, rate), now,
                          spans[customer_id], service_class, segment)
            added += 1
        return added

    def session(self, report: SessionReport):
        """One application session -> a quality sample; returns the Quality."""
        if report.service == "web":
            quality = web_quality(report.page_load_s if report.page_load_s is not None
                                  else float("nan"), self.settings.web_anchors)
            duration = report.page_load_s or 0.0
        elif report.service == "video":
            quality = video_quality(report.stalls if report.stalls is not None else 0,
                                    report.mean_stall_s or 0.0, report.initial_delay_s,
                                    report.bitrate_bps)
            duration = 0.0
        else:
            raise ValueError(f"service {report.service!r}: sessions are reported for web and "
                             "video")
        service_class, segment, _ = self._profile(report.customer_id)
        self.book.add(report.customer_id, report.service, quality, self.clock(), duration,
                      service_class, segment)
        return quality
