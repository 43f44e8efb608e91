"""Probe records in the controller: validation, a bounded window per flow, joins (core).

A record with impossible values (negative counts, ratios above 1, an interval that ends
before it starts, NaN where a number is required) is rejected with the reason; nothing
already stored is touched. An accepted record is joined once, as it arrives: its service
(from its kind, else its ports and DSCP) and its customer (by either address, through the
CustomerDirectory). When the directory's answer for an address changes (a host learned, a
customer's devices changed), the stored records of the flows concerned are joined again.
Thread-safe: gRPC servicer threads add and read.
"""

import collections
import dataclasses
import math
import re
import threading
import time

from controller import validation
from controller.monitor.directory import CustomerDirectory
from qoe.classify import classify_ndpi, classify_ports

KIND_SERVICES = {"rtp": "voice", "mpegts": "iptv", "stamp": "active-test"}
_RATIO_KPIS = ("rtp_loss_ratio", "stamp_loss_ratio")
_NON_NEGATIVE = ("rtp_lost", "rtp_expected", "rtp_duplicates", "rtp_reordered", "rtp_jitter_ms",
                 "ts_cc_errors", "ts_lost_packets", "ts_sync_loss", "ts_pat_errors",
                 "ts_pmt_errors", "mdi_df_ms", "mdi_mlr_pps", "tcp_rtt_ms",
                 "tcp_handshake_rtt_ms", "tcp_retransmissions", "tcp_zero_windows",
                 "tcp_rtt_samples", "ts_pcr_jitter_ms", "stamp_sent", "stamp_lost",
                 "stamp_rtt_ms", "stamp_rtt_max_ms", "stamp_jitter_ms", "stamp_duplicates",
                 "stamp_reordered", "rtp_jitter_max_ms", "rtp_jitter_mean_ms",
                 "rtp_loss_bursts", "rtp_mean_burst_packets", "ts_sync_byte_errors",
                 "ts_pid_errors", "ts_crc_errors", "ts_pcr_repetition_errors",
                 "ts_pcr_discontinuity_errors", "rtp_payload_type", "ts_packets")
KINDS = ("udp", "rtp", "mpegts", "tcp", "stamp")


@dataclasses.dataclass(frozen=True)
class KpiRecord:
    probe_id: str
    src: str
    dst: str
    proto: int
    sport: int
    dport: int
    kind: str
    interval_start_unix_s: float
    interval_end_unix_s: float
    packets: int
    bytes: int
    throughput_bps: float
    dscp: int
    kpis: dict
    customer_id: str = ""
    service: str = ""
    application: str = ""     # what nDPI detected in the probe ("TLS.YouTube"), if it ran
    category: str = ""        # nDPI's category ("Media")
    detected_by: str = ""     # "ndpi" or "ndpi-guess"
    service_method: str = ""  # how `service` was decided: signature, ndpi, port, dscp, none

    @property
    def flow_key(self) -> tuple:
        return (self.src, self.dst, self.proto, self.sport, self.dport)

    @property
    def store_key(self) -> tuple:
        """What one window of records is kept for: a flow as one probe sees it. Two probes
        on the path of the same flow (or an agent and a passive probe) are two windows."""
        return (self.probe_id, *self.flow_key)


MAX_KPIS = 64                 # KPIs in one record
_KPI_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_GOOD_NAMES: set = set()      # names that matched _KPI_NAME
MAX_KPI_VALUE = 1e12          # no KPI cems knows (ms, counts, ratios, bit/s) comes near
MAX_THROUGHPUT_BPS = 1e13     # 10 Tbit/s
MAX_UNIX_S = 2.0 ** 33        # the year 2242
MAX_INTERVAL_S = 86_400.0


def check_record(record: KpiRecord) -> str:
    """'' if the record is possible, else what is wrong with it (values truncated)."""
    for field in ("src", "dst"):
        try:
            validation.ip_address(field, getattr(record, field))
        except ValueError as err:
            return str(err)
    name = f"{record.src}:{record.sport}->{record.dst}:{record.dport}/{record.proto}"
    if not (0 <= record.sport <= 65535 and 0 <= record.dport <= 65535
            and 0 <= record.proto <= 255):
        return f"{name}: ports must be 0..65535 and the protocol 0..255"
    if record.packets > validation.INT64_MAX or record.bytes > validation.INT64_MAX:
        return f"{name}: {record.packets} packets, {record.bytes} bytes in one interval"
    if len(record.kpis) > MAX_KPIS:
        return f"{name}: {len(record.kpis)} KPIs, more than {MAX_KPIS}"
    for key in record.kpis:
        if key in _GOOD_NAMES:
            continue
        if not isinstance(key, str) or not _KPI_NAME.match(key):
            return (f"{name}: KPI name {validation.shown(key)} must be 1 to 48 lower-case "
                    "letters, digits and '_'")
        if len(_GOOD_NAMES) < 4096:  # names repeat in every record; bounded all the same
            _GOOD_NAMES.add(key)
    if not 0 <= record.interval_start_unix_s <= MAX_UNIX_S or \
            not record.interval_end_unix_s - record.interval_start_unix_s <= MAX_INTERVAL_S:
        return (f"{name}: the interval {record.interval_start_unix_s}..."
                f"{record.interval_end_unix_s} is not a unix time span of at most a day")
    if record.throughput_bps > MAX_THROUGHPUT_BPS:
        return f"{name}: throughput_bps {record.throughput_bps:g} is above 10 Tbit/s"
    if record.kind not in KINDS:
        return f"{name}: kind {record.kind!r} is not one of {', '.join(KINDS)}"
    for field in ("interval_start_unix_s", "interval_end_unix_s", "throughput_bps"):
        value = getattr(record, field)
        if not math.isfinite(value) or value < 0:
            return f"{name}: {field} must be a finite number >= 0, got {value}"
    if record.interval_end_unix_s < record.interval_start_unix_s:
        return f"{name}: the interval ends ({record.interval_end_unix_s}) before it starts"
    if record.bytes < record.packets * 20 and record.packets:
        return f"{name}: {record.bytes} bytes cannot hold {record.packets} IP packets"
    if not 0 <= record.dscp <= 63:
        return f"{name}: dscp {record.dscp} is not 0..63"
    for key, value in record.kpis.items():
        if math.isnan(value):
            continue  # unknown in this interval
        if abs(value) > MAX_KPI_VALUE:
            return f"{name}: {key} {value:g} is beyond any possible value"
        if key in _RATIO_KPIS and not 0 <= value <= 1:
            return f"{name}: {key} must be 0..1 (a ratio), got {value}"
        if key in _NON_NEGATIVE and (value < 0 or math.isinf(value)):
            return f"{name}: {key} must be finite and >= 0, got {value}"
    return ""


@dataclasses.dataclass(frozen=True)
class ProbeHealth:
    """A probe's own counters (totals since it started), as it last reported them."""
    probe_id: str
    time_unix_s: float
    source: str = ""
    frames: int = 0
    malformed: int = 0
    kernel_received: int = 0
    kernel_dropped: int = 0
    flows_tracked: int = 0
    flows_evicted: int = 0
    export_dropped: int = 0
    hot_path: str = ""  # "compiled" or "python": the passive probe's hot path


def record_bytes(record: KpiRecord) -> int:
    """About what a stored record costs in memory (measured: ~420 B plus ~90 B a KPI)."""
    return 420 + 90 * len(record.kpis)


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of records that match, and where the next one starts."""

    records: list
    total: int
    next_offset: int | None  # None: this was the last page


class KpiStore:
    """The latest `window` records of each flow per probe, joined with customer and service,
    within `max_flows` flows and `max_bytes` (the least recently updated flows go first),
    an index of the flows by customer kept as records arrive, and the latest health report
    of at most `max_probes` probes.

    A flow has ended when its latest record ended more than `max_age_s` before the newest
    record of its probe, or when the probe has sent nothing for `max_age_s` (by this
    controller's clock): it is no longer in "now" views (it stays in the history). Judging
    by the probe's own time keeps a replayed capture and a probe with a skewed clock right."""

    def __init__(self, window: int = 60, max_flows: int = 100_000, max_probes: int = 1000,
                 directory: CustomerDirectory | None = None, max_bytes: int = 256 << 20,
                 max_age_s: float = 60.0, clock=time.time):
        self.window = window
        self.max_flows = max_flows
        self.max_probes = max_probes
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.clock = clock
        self.directory = directory or CustomerDirectory()
        self._lock = threading.Lock()
        self._flows: collections.OrderedDict = collections.OrderedDict()
        self._bytes: dict = {}                       # flow key -> bytes of its window
        self._customer_of: dict = {}                 # flow key -> customer id ("" none)
        self._by_customer: dict[str, set] = collections.defaultdict(set)
        self.bytes_total = 0
        self._probes: collections.OrderedDict = collections.OrderedDict()
        # probe -> (end of its newest record, by its clock; when it last sent, by ours)
        self._probe_time: collections.OrderedDict = collections.OrderedDict()
        self._joined: tuple[int, dict[str, str]] = (-1, {})  # directory version, mapping
        self.accepted_total = 0
        self.rejected_total = 0
        self.probe_dropped_total = 0
        self.evicted_total = 0
        # service -> [bytes, packets, then the COUNTED_KPIS], summed over accepted records
        self.service_totals: dict[str, list[float]] = {}

    def set_health(self, health: ProbeHealth) -> None:
        with self._lock:
            self._probes[health.probe_id] = health
            self._probes.move_to_end(health.probe_id)
            while len(self._probes) > self.max_probes:
                self._probes.popitem(last=False)

    def probes(self) -> list[ProbeHealth]:
        with self._lock:
            return sorted(self._probes.values(), key=lambda h: h.probe_id)

    # -- keeping -----------------------------------------------------------------------
    def _index(self, key, customer: str) -> None:
        old = self._customer_of.get(key)
        if old == customer:
            return
        if old is not None:
            self._by_customer[old].discard(key)
            if not self._by_customer[old]:
                del self._by_customer[old]
        self._customer_of[key] = customer
        self._by_customer[customer].add(key)

    def _forget(self, key) -> None:
        self._flows.pop(key, None)
        self.bytes_total -= self._bytes.pop(key, 0)
        customer = self._customer_of.pop(key, None)
        if customer is not None:
            self._by_customer[customer].discard(key)
            if not self._by_customer[customer]:
                del self._by_customer[customer]

    def _sync(self) -> dict[str, str]:
        """The directory's mapping now; stored flows whose customer it changed are joined
        again (under the lock)."""
        version, mapping = self.directory.current()
        old_version, old = self._joined
        if version != old_version:
            changed = {a for a in old.keys() | mapping.keys() if old.get(a) != mapping.get(a)}
            for key, window in self._flows.items():
                if key[1] in changed or key[2] in changed:  # (probe, src, dst, ...)
                    records = [_join(r, mapping) for r in window]
                    window.clear()
                    window.extend(records)
                    self._index(key, records[-1].customer_id)
            self._joined = (version, mapping)
        return mapping

    def add(self, records: list[KpiRecord], probe_dropped: int = 0) -> tuple[int, list[str]]:
        """Store the possible records; returns (accepted, problems of the rejected ones)."""
        accepted, problems = self.add_records(records, probe_dropped)
        return len(accepted), problems

    def add_records(self, records: list[KpiRecord], probe_dropped: int = 0
                    ) -> tuple[list[KpiRecord], list[str]]:
        """Store the possible records, joined; returns (the accepted ones as stored,
        problems of the others)."""
        problems = []
        accepted = []
        with self._lock:
            mapping = self._sync()
            self.probe_dropped_total = validation.saturated(self.probe_dropped_total +
                                                            probe_dropped)
            for record in records:
                problem = check_record(record)
                if problem:
                    problems.append(problem)
                    continue
                record = _joined(record, *_service(record), mapping)
                key = record.store_key
                window = self._flows.get(key)
                if window is None:
                    window = self._flows[key] = collections.deque(maxlen=self.window)
                    self._bytes[key] = 0
                else:
                    self._flows.move_to_end(key)
                    if len(window) == window.maxlen:
                        gone = record_bytes(window[0])
                        self._bytes[key] -= gone
                        self.bytes_total -= gone
                weight = record_bytes(record)
                window.append(record)
                self._bytes[key] += weight
                self.bytes_total += weight
                self._index(key, record.customer_id)
                self._seen(record)
                self._count(record)
                accepted.append(record)
            while self._flows and (len(self._flows) > self.max_flows
                                   or self.bytes_total > self.max_bytes):
                self._forget(next(iter(self._flows)))  # the least recently updated flow
                self.evicted_total += 1
            self.accepted_total += len(accepted)
            self.rejected_total += len(problems)
        return accepted, problems

    def _count(self, record: KpiRecord) -> None:
        service = record.service or "other"
        totals = self.service_totals.get(service)
        if totals is None:
            if len(self.service_totals) >= MAX_COUNTED_SERVICES:
                service = "other"
            totals = self.service_totals.setdefault(service, [0.0] * (2 + len(COUNTED_KPIS)))
        totals[0] += record.bytes
        totals[1] += record.packets
        for i, key in enumerate(COUNTED_KPIS, 2):
            value = record.kpis.get(key)
            if value is not None and value > 0:   # NaN is not > 0
                totals[i] += value

    def _seen(self, record: KpiRecord) -> None:
        newest, _ = self._probe_time.get(record.probe_id, (record.interval_end_unix_s, 0.0))
        self._probe_time[record.probe_id] = (max(newest, record.interval_end_unix_s),
                                             self.clock())
        self._probe_time.move_to_end(record.probe_id)
        while len(self._probe_time) > self.max_probes:
            self._probe_time.popitem(last=False)

    # -- reading -----------------------------------------------------------------------
    def age_of(self, record: KpiRecord) -> float:
        """age_s() for a reader outside the lock."""
        with self._lock:
            return self.age_s(record)

    def age_s(self, record: KpiRecord) -> float:
        """Seconds since the record's interval ended: by its probe's clock up to the probe's
        newest record, then by this controller's since that arrived."""
        newest, arrived = self._probe_time.get(record.probe_id, (record.interval_end_unix_s,
                                                                 self.clock()))
        return max(0.0, newest - record.interval_end_unix_s) + max(0.0, self.clock() - arrived)

    def _current(self, window) -> bool:
        return self.age_s(window[-1]) <= self.max_age_s

    def latest(self, include_ended: bool = False) -> list[KpiRecord]:
        """The latest record of each flow that has not ended (or of every flow)."""
        with self._lock:
            self._sync()
            return [w[-1] for w in self._flows.values() if include_ended or self._current(w)]

    def everything(self) -> list[KpiRecord]:
        """Every stored record, flow by flow, oldest first within a flow."""
        with self._lock:
            self._sync()
            return [record for window in self._flows.values() for record in window]

    def history(self, probe_id: str, flow_key: tuple) -> list[KpiRecord]:
        with self._lock:
            self._sync()
            return list(self._flows.get((probe_id, *flow_key), ()))

    def select(self, customer_id: str = "", service: str = "", history: bool = False,
               include_ended: bool = False, offset: int = 0, limit: int = 0) -> Page:
        """Records of one customer (from the index) or all, and of one service when given:
        the latest of each current flow (with `history` every stored one, with
        `include_ended` also of flows that ended), ordered by customer, service, flow, probe
        and time; `limit` of them from `offset` (0: all)."""
        with self._lock:
            self._sync()
            keys = (self._by_customer.get(customer_id, ()) if customer_id else self._flows)
            windows = [self._flows[k] for k in keys]
            if not history:
                windows = [w for w in windows if include_ended or self._current(w)]
            records = [r for w in windows for r in (w if history else (w[-1],))]
        if service:
            records = [r for r in records if r.service == service]
        records.sort(key=lambda r: (r.customer_id, r.service, r.flow_key, r.probe_id,
                                    r.interval_start_unix_s))
        end = len(records) if not limit else offset + limit
        return Page(records[offset:end], len(records), end if end < len(records) else None)


def _joined(r: KpiRecord, service: str, method: str, ip_to_customer: dict[str, str]
            ) -> KpiRecord:
    """The record with its service and customer (one construction: dataclasses.replace
    costs several times as much, and every record passes here)."""
    customer = ip_to_customer.get(r.src) or ip_to_customer.get(r.dst) or ""
    return KpiRecord(r.probe_id, r.src, r.dst, r.proto, r.sport, r.dport, r.kind,
                     r.interval_start_unix_s, r.interval_end_unix_s, r.packets, r.bytes,
                     r.throughput_bps, r.dscp, r.kpis, customer, service, r.application,
                     r.category, r.detected_by, method)


def _join(record: KpiRecord, ip_to_customer: dict[str, str]) -> KpiRecord:
    customer = ip_to_customer.get(record.src) or ip_to_customer.get(record.dst) or ""
    return record if customer == record.customer_id else \
        dataclasses.replace(record, customer_id=customer)


def _service(record: KpiRecord) -> tuple[str, str]:
    """(service, how it was decided): the probe's payload signatures first (its record kinds
    rtp and mpegts, and STAMP), then what nDPI named (qoe.classify.NDPI_APPLICATIONS and
    NDPI_CATEGORIES, the one table), then ports and DSCP."""
    if record.kind in KIND_SERVICES:
        return KIND_SERVICES[record.kind], "signature"
    found = classify_ndpi(record.application, record.category)
    if found is not None:
        return found.service, "ndpi"
    return service_and_method(record)


STAMP_PORT = 862  # RFC 8762's well-known port: test traffic, not a customer's service


def service_of(record: KpiRecord) -> str:
    """The service a record's flow belongs to by its ports and DSCP (qoe.classify); STAMP
    test traffic a passive probe sees is "active-test", like the agents' own records."""
    return service_and_method(record)[0]


def service_and_method(record: KpiRecord) -> tuple[str, str]:
    """service_of() and the method that decided it (signature, port, dscp or none)."""
    transport = {6: "tcp", 17: "udp"}.get(record.proto, "")
    if transport == "udp" and STAMP_PORT in (record.sport, record.dport):
        return KIND_SERVICES["stamp"], "signature"
    answer = classify_ports(transport, record.sport, record.dport, record.dscp)
    return (answer.service, answer.method) if answer else ("unknown", "none")


# KPIs summarised per service for Prometheus (each better when smaller)
# KPIs that count events in a record's interval: summed per service into counters
COUNTED_KPIS = ("rtp_lost", "ts_cc_errors", "tcp_retransmissions", "stamp_lost")
MAX_COUNTED_SERVICES = 64     # services with counters of their own; the rest are "other"

SUMMARY_KPIS = ("rtp_loss_ratio", "rtp_jitter_ms", "ts_cc_errors", "mdi_df_ms", "mdi_mlr_pps",
                "tcp_rtt_ms", "tcp_retransmissions", "stamp_rtt_ms", "stamp_loss_ratio",
                "stamp_jitter_ms")


def summarise_by_service(records: list[KpiRecord]) -> dict[str, dict]:
    """{service: {"flows": n, "throughput_bps": sum, kpi: (mean, worst)}} over the records
    (each flow's latest), skipping unknown (NaN) values. Worst is the largest value: every
    KPI in SUMMARY_KPIS is better when smaller."""
    out: dict[str, dict] = {}
    values: dict[tuple, list] = collections.defaultdict(list)
    for record in records:
        service = record.service or _service(record)[0]
        entry = out.setdefault(service, {"flows": 0, "throughput_bps": 0.0})
        entry["flows"] += 1
        entry["throughput_bps"] += record.throughput_bps
        for key in SUMMARY_KPIS:
            value = record.kpis.get(key)
            if value is not None and not math.isnan(value):
                values[(service, key)].append(value)
    for (service, key), found in values.items():
        out[service][key] = (sum(found) / len(found), max(found))
    return out
