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
import functools
import math
import threading
import time

from controller.monitor.experience import ExperienceBook
from controller.monitor.period import measure_period
from controller.monitor.quality import (DelayEstimate, QualitySettings, bulk_quality,
                                        iptv_scores, one_way_delay, quality_of, video_quality,
                                        voice_scores, web_quality)

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
        if stamp is None and not records:
            return None
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

    def records(self, records, at_unix_s: float | None = None) -> int:
        """Accepted probe records -> quality samples; returns how many were added.
        `at_unix_s`: when they arrived, for records replayed from the stream (now if None)."""
        now = self.clock() if at_unix_s is None else at_unix_s
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
        # Scores for every record (voice on whole arrays); the full Quality of a pair's
        # latest record, with its inputs and assumptions, is computed when someone looks
        # (ExperienceBook resolves it), from the same record and delay estimate.
        delays, profiles = {}, {}
        voice, iptv, samples = [], [], []
        for record in records:
            if not record.customer_id:
                continue
            customer = record.customer_id
            if customer not in delays:
                delays[customer] = self.delay_of(customer, now)
                profiles[customer] = self._profile(customer)
            span = max(0.0, record.interval_end_unix_s - record.interval_start_unix_s)
            if record.service == "bulk":
                bulk[customer] += record.throughput_bps
                spans[customer] = max(spans.get(customer, 0.0), span)
                continue
            service_class, segment, _ = profiles[customer]
            latest = functools.partial(quality_of, record, delays[customer], self.settings)
            if record.service == "voice" and record.kind == "rtp":
                voice.append(record)
                samples.append([customer, "voice", math.nan, span, service_class, segment,
                                latest])
            elif record.service == "iptv" and record.kind == "mpegts":
                iptv.append(record)
                samples.append([customer, "iptv", math.nan, span, service_class, segment,
                                latest])
        for service, batch, scores in (
                ("voice", voice, lambda: voice_scores(voice, [delays[r.customer_id]
                                                              for r in voice])),
                ("iptv", iptv, lambda: iptv_scores(iptv, self.settings))):
            if batch:
                for row, score in zip((row for row in samples if row[1] == service), scores()):
                    row[2] = float(score)
        for customer_id, throughput in bulk.items():
            service_class, segment, rate = profiles[customer_id]
            quality = bulk_quality(throughput, rate)
            samples.append((customer_id, "bulk", quality.score if quality.known else math.nan,
                            spans[customer_id], service_class, segment, quality))
        self.book.add_samples(now, samples, replayed=at_unix_s is not None)
        return len(samples)

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
