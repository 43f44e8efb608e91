"""Experience per customer and service: quality samples, windows, targets and statuses (core).

Each quality sample (controller.monitor.quality) of a customer's service is kept for a
horizon (`horizon_s`, 60 s by default), time-stamped by this controller's clock when it
arrives. From them, per customer and service and window (1 s, 10 s, 60 s): mean, worst,
percentiles (qoe.aggregate) and the time below the target; and a status with hysteresis:

- degraded: over the last `sustain_s` (10 s) at least `min_samples` known scores, their mean
  below the target and at least half of them below it: a sustained fall, never one sample;
- ok again: over the last `sustain_s` the mean at least `margin` above the target, with at
  least `min_samples` known scores (the margin keeps a score on the line from flapping);
- unknown: no known score within the horizon (bounds count: an upper bound below the target
  is a real fall, since the true score is lower still).

Targets are per service and class, configurable; the defaults say their source.
Thread-safe: probes' records arrive on gRPC threads, a ticker evaluates.
"""

import array
import collections
import dataclasses
import threading
from typing import Iterable, Mapping

import numpy as np

from qoe.aggregate import aggregate_windows

SERVICES = ("voice", "iptv", "video", "web", "bulk")
WINDOWS_S = (1.0, 10.0, 60.0)
OK, DEGRADED, UNKNOWN = "ok", "degraded", "unknown"


@dataclasses.dataclass(frozen=True)
class Target:
    minimum: float   # a score below this is below target
    source: str


_ACR = ("ITU-T P.800 ACR scale: 3 is 'fair'; no cited threshold for this model, set per "
        "operator")
DEFAULT_TARGETS: Mapping[tuple[str, str], Target] = {
    ("voice", "gold"): Target(4.03, "ITU-T G.107 Annex B / G.109: R 80 (users satisfied)"),
    ("voice", "silver"): Target(4.03, "ITU-T G.107 Annex B / G.109: R 80 (users satisfied)"),
    ("voice", "bronze"): Target(3.60, "ITU-T G.107 Annex B / G.109: R 70 (some users "
                                      "dissatisfied below)"),
    ("iptv", ""): Target(3.0, _ACR), ("video", ""): Target(3.0, _ACR),
    ("web", ""): Target(3.0, _ACR),
    ("bulk", ""): Target(0.8, "cems default: 80 % of the SLS rate"),
}


def target_for(targets: Mapping[tuple[str, str], Target], service: str, service_class: str
               ) -> Target:
    return targets.get((service, service_class)) or targets.get((service, "")) or \
        Target(3.0, _ACR)


@dataclasses.dataclass(frozen=True)
class Status:
    status: str                 # ok, degraded, unknown
    since_unix_s: float
    reason: str


@dataclasses.dataclass(frozen=True)
class StatusChange:
    customer_id: str
    service: str
    before: str
    after: Status


@dataclasses.dataclass(frozen=True)
class WindowFigures:
    window_s: float
    count: int
    unknown: int
    mean: float
    worst: float
    p5: float
    p50: float
    p95: float
    time_below_s: float


@dataclasses.dataclass(frozen=True)
class ServiceExperience:
    customer_id: str
    service: str
    service_class: str
    segment: str
    status: Status
    target: Target
    latest: object              # the latest Quality (or None)
    windows: tuple[WindowFigures, ...]

    @property
    def score(self) -> float:
        """The 10 s mean (NaN while unknown): what lists are ordered by."""
        for window in self.windows:
            if window.window_s == 10.0:
                return window.mean
        return float("nan")


@dataclasses.dataclass(frozen=True)
class GroupSummary:
    """The customers of one service, class and segment over a window: how many pairs are in
    each status, how many are below target (their window mean), and the figures of all the
    group's samples in the window (qoe.aggregate; NaN without known samples)."""

    service: str
    service_class: str
    segment: str
    target: float
    statuses: Mapping[str, int]
    below_target: int
    figures: WindowFigures


@dataclasses.dataclass
class _Pair:
    service_class: str
    segment: str
    status: Status
    latest: object = None
    samples: collections.deque = dataclasses.field(default_factory=collections.deque)
    # the last HISTORY_MINUTES minutes with known samples: [minute, sum, count, worst] * n
    history: array.array = dataclasses.field(default_factory=lambda: array.array("d"))


HISTORY_MINUTES = 60


@dataclasses.dataclass(frozen=True)
class HistoryPoint:
    """One minute of a pair's known quality samples."""
    start_unix_s: float
    mean: float
    worst: float
    samples: int


def _remember(history: array.array, now: float, score: float) -> None:
    minute = float(now // 60)
    if not history or minute > history[-4]:
        history.extend((minute, 0.0, 0.0, score))
        if len(history) > 4 * HISTORY_MINUTES:
            del history[:4]
    # a clock that went back adds to the newest minute rather than rewriting the past
    history[-3] += score
    history[-2] += 1
    history[-1] = min(history[-1], score)


class ExperienceBook:
    def __init__(self, targets: Mapping[tuple[str, str], Target] | None = None,
                 sustain_s: float = 10.0, horizon_s: float = 60.0, min_samples: int = 3,
                 margin: float = 0.1, max_pairs: int = 1_000_000):
        self.targets = dict(DEFAULT_TARGETS if targets is None else targets)
        self.sustain_s = sustain_s
        self.horizon_s = horizon_s
        self.min_samples = min_samples
        self.margin = margin
        self.max_pairs = max_pairs
        self._lock = threading.Lock()
        self._pairs: dict[tuple[str, str], _Pair] = {}

    def add(self, customer_id: str, service: str, quality, now: float, duration_s: float,
            service_class: str = "", segment: str = "") -> None:
        """One quality sample of a customer's service that arrived at `now`."""
        score = quality.score if quality is not None and quality.known else float("nan")
        self.add_samples(now, [(customer_id, service, score, duration_s, service_class,
                                segment, quality)])

    def add_samples(self, now: float, samples: Iterable[tuple], replayed: bool = False) -> None:
        """Many samples that arrived at `now`, each (customer, service, score (NaN: unknown),
        duration_s, class, segment, quality): the quality becomes the pair's latest; it may
        be a function that makes the Quality, called when the pair is first looked at (the
        score is what counts for statuses and windows, the details only when shown).
        `replayed`: records replayed from the stream, as they arrived then; of a pair that
        already has a later sample they are not added (it has that time already)."""
        with self._lock:
            for customer_id, service, score, duration_s, service_class, segment, quality \
                    in samples:
                pair = self._pairs.get((customer_id, service))
                if pair is None:
                    if len(self._pairs) >= self.max_pairs:
                        continue
                    pair = self._pairs[(customer_id, service)] = _Pair(
                        service_class, segment, Status(UNKNOWN, now, "no quality sample yet"))
                if service_class:
                    pair.service_class = service_class
                if segment:
                    pair.segment = segment
                if replayed and pair.samples and now < pair.samples[-1][0]:
                    continue
                pair.latest = quality
                pair.samples.append((now, score, duration_s))
                if score == score:
                    _remember(pair.history, now, score)

    def forget(self, customer_id: str) -> None:
        with self._lock:
            for key in [k for k in self._pairs if k[0] == customer_id]:
                del self._pairs[key]

    # -- statuses --------------------------------------------------------------------------
    def _judge(self, pair: _Pair, target: Target, now: float) -> Status:
        while pair.samples and pair.samples[0][0] < now - self.horizon_s:
            pair.samples.popleft()
        known = [s for t, s, _ in pair.samples if s == s]
        if not known:
            if pair.status.status == UNKNOWN:
                return pair.status
            return Status(UNKNOWN, now, f"no known quality in the last {self.horizon_s:g} s")
        recent = [s for t, s, _ in pair.samples if t >= now - self.sustain_s and s == s]
        if len(recent) < self.min_samples:
            return pair.status
        mean = sum(recent) / len(recent)
        below = sum(1 for s in recent if s < target.minimum)
        if pair.status.status != DEGRADED and mean < target.minimum and \
                2 * below >= len(recent):
            return Status(DEGRADED, now, f"mean {mean:.2f} over the last {self.sustain_s:g} s "
                                         f"below the target {target.minimum:g} ({below} of "
                                         f"{len(recent)} samples below)")
        if pair.status.status != OK and mean >= target.minimum + self.margin:
            return Status(OK, now, f"mean {mean:.2f} over the last {self.sustain_s:g} s at or "
                                   f"above the target {target.minimum:g} + {self.margin:g}")
        return pair.status

    def evaluate(self, now: float) -> list[StatusChange]:
        """Statuses as of `now`; returns the changes."""
        changes = []
        with self._lock:
            for (customer_id, service), pair in self._pairs.items():
                target = target_for(self.targets, service, pair.service_class)
                status = self._judge(pair, target, now)
                if status is not pair.status:
                    changes.append(StatusChange(customer_id, service, pair.status.status,
                                                status))
                    pair.status = status
        return changes

    # -- reading ---------------------------------------------------------------------------
    def _figures(self, pair: _Pair, target: Target, now: float) -> tuple[WindowFigures, ...]:
        out = []
        for window in WINDOWS_S:
            rows = [(s, d) for t, s, d in pair.samples if t >= now - window]
            scores = np.array([s for s, _ in rows], dtype=np.float64)
            durations = np.array([d for _, d in rows], dtype=np.float64)
            if not len(rows):
                out.append(WindowFigures(window, 0, 0, *([float("nan")] * 5), 0.0))
                continue
            # one group: the aggregation of qoe.aggregate over these samples
            aggregate = aggregate_windows(np.zeros(len(rows)), np.zeros(len(rows)),
                                          np.zeros(len(rows)), scores, durations, 1e12,
                                          target.minimum)
            p5, p50, p95 = (float(v) for v in aggregate.percentiles[0])
            out.append(WindowFigures(window, int(aggregate.count[0]), int(aggregate.unknown[0]),
                                     float(aggregate.mean[0]), float(aggregate.worst[0]),
                                     p5, p50, p95, float(aggregate.time_below_s[0])))
        return tuple(out)

    def _view(self, key, pair: _Pair, now: float) -> ServiceExperience:
        if callable(pair.latest):
            pair.latest = pair.latest()
        target = target_for(self.targets, key[1], pair.service_class)
        return ServiceExperience(key[0], key[1], pair.service_class, pair.segment, pair.status,
                                 target, pair.latest, self._figures(pair, target, now))

    def history(self, customer_id: str, service: str, now: float, span_s: float = 3600.0
                ) -> tuple[HistoryPoint, ...]:
        """The pair's minutes with known samples that started within `span_s` of `now`
        (at most the last HISTORY_MINUTES), oldest first."""
        with self._lock:
            pair = self._pairs.get((customer_id, service))
            rows = pair.history.tolist() if pair is not None else []
        return tuple(HistoryPoint(rows[i] * 60, rows[i + 1] / rows[i + 2], rows[i + 3],
                                  int(rows[i + 2]))
                     for i in range(0, len(rows), 4) if rows[i] * 60 >= now - span_s - 60)

    def of_customer(self, customer_id: str, now: float) -> list[ServiceExperience]:
        with self._lock:
            return [self._view(key, pair, now) for key, pair in sorted(self._pairs.items())
                    if key[0] == customer_id]

    def select(self, now: float, services: Iterable[str] = (), statuses: Iterable[str] = (),
               segment: str = "", service_class: str = "",
               customers: Iterable[str] | None = None) -> list[ServiceExperience]:
        """Pairs that match, worst first (degraded, then lowest 10 s mean; unknown last)."""
        services, statuses = set(services), set(statuses)
        wanted = None if customers is None else set(customers)
        with self._lock:
            views = [self._view(key, pair, now) for key, pair in self._pairs.items()
                     if (not services or key[1] in services)
                     and (not statuses or pair.status.status in statuses)
                     and (not segment or pair.segment == segment)
                     and (not service_class or pair.service_class == service_class)
                     and (wanted is None or key[0] in wanted)]
        rank = {DEGRADED: 0, OK: 1, UNKNOWN: 2}
        return sorted(views, key=lambda v: (rank[v.status.status],
                                            v.score if v.score == v.score else 99.0,
                                            v.customer_id, v.service))

    def summary(self, now: float, window_s: float = 10.0) -> list[GroupSummary]:
        """Per service, class and segment (bounded: a handful of each, whatever the number of
        customers), over the last `window_s`; what Prometheus shows of everybody."""
        groups: dict[tuple[str, str, str], list] = {}
        with self._lock:
            for (_, service), pair in self._pairs.items():
                key = (service, pair.service_class, pair.segment)
                group = groups.setdefault(key, [collections.Counter(), 0, [], []])
                group[0][pair.status.status] += 1
                recent = [(s, d) for t, s, d in pair.samples if t >= now - window_s]
                known = [s for s, _ in recent if s == s]
                target = target_for(self.targets, service, pair.service_class).minimum
                if known and sum(known) / len(known) < target:
                    group[1] += 1
                group[2].extend(s for s, _ in recent)
                group[3].extend(d for _, d in recent)
        out = []
        for (service, service_class, segment), (counts, below, scores, durations) in \
                sorted(groups.items()):
            target = target_for(self.targets, service, service_class).minimum
            if scores:
                n = len(scores)
                agg = aggregate_windows(np.zeros(n), np.zeros(n), np.zeros(n),
                                        np.array(scores, dtype=np.float64),
                                        np.array(durations, dtype=np.float64), 1e12, target)
                p5, p50, p95 = (float(v) for v in agg.percentiles[0])
                figures = WindowFigures(window_s, int(agg.count[0]), int(agg.unknown[0]),
                                        float(agg.mean[0]), float(agg.worst[0]), p5, p50, p95,
                                        float(agg.time_below_s[0]))
            else:
                figures = WindowFigures(window_s, 0, 0, *([float("nan")] * 5), 0.0)
            out.append(GroupSummary(service, service_class, segment, target,
                                    {status: counts.get(status, 0)
                                     for status in (OK, DEGRADED, UNKNOWN)}, below, figures))
        return out

    def digest_rows(self, now: float, window_s: float = 10.0) -> list[tuple]:
        """Per pair, cheaply (no percentiles): (customer, service, class, segment, Status,
        samples in the last `window_s`, unknown among them, mean and worst of the known
        ones (NaN without)): what a cluster instance tells the others
        (controller/cluster/digest.py)."""
        out = []
        with self._lock:
            for (customer_id, service), pair in self._pairs.items():
                count = unknown = 0
                total, worst = 0.0, float("inf")
                for t, score, _ in reversed(pair.samples):
                    if t < now - window_s:
                        break
                    count += 1
                    if score != score:
                        unknown += 1
                        continue
                    total += score
                    worst = min(worst, score)
                known = count - unknown
                out.append((customer_id, service, pair.service_class, pair.segment,
                            pair.status, count, unknown,
                            total / known if known else float("nan"),
                            worst if known else float("nan")))
        return out

    def pair_services(self) -> dict[tuple[str, str], str]:
        """(src, dst) -> service of flows other instances' probes records showed (with
        customer partitions, controller/cluster/digest.ClusterBook); none here."""
        return {}

    def peer_addresses(self, customer_id: str) -> set[str]:
        """The addresses the customer's flows talk to as other instances saw them (with
        customer partitions); none here: this instance's KPI store says the rest."""
        return set()

    def degraded(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(k for k, p in self._pairs.items() if p.status.status == DEGRADED)

    def statuses(self) -> dict[tuple[str, str], str]:
        with self._lock:
            return {k: p.status.status for k, p in self._pairs.items()}
