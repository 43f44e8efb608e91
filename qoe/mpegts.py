"""MPEG transport stream analysis: ETSI TR 101 290 priority-1 checks, PCR and RFC 4445 MDI (core).

Sources:
- ETSI TR 101 290 V1.4.1 (2020-06), "Measurement guidelines for DVB systems", clause 5.2.1
  (first priority): 1.1 TS_sync_loss, 1.2 Sync_byte_error, 1.3.a PAT_error_2, 1.4
  Continuity_count_error, 1.5.a PMT_error_2, 1.6 PID_error; clause 5.2.2 (second priority)
  for the PCR checks used here: 2.3.a PCR_repetition_error (interval > 40 ms), 2.3.b
  PCR_discontinuity_indicator_error (> 100 ms or backwards without the indicator), 2.2
  CRC_error of PSI sections.
- ISO/IEC 13818-1 for the packet, adaptation field, PAT and PMT syntax.
- RFC 4445, "A Proposed Media Delivery Index (MDI)", section 3: Delay Factor from a virtual
  buffer drained at the media rate, Media Loss Rate in media packets per second.

TsAnalyzer is fed the payload of each UDP (or RTP) datagram with its arrival time, as the
passive probe sees it; payloads that are not whole 188-byte packets starting with 0x47 are
counted as not TS and leave the stream state untouched.
"""

import dataclasses
import math
from typing import Iterator

TS_PACKET = 188
SYNC = 0x47
NULL_PID = 0x1FFF
PAT_PID = 0x0000
PCR_HZ = 27_000_000
PSI_INTERVAL_S = 0.5       # 1.3.a / 1.5.a: PAT and each PMT at least every 0.5 s
PCR_REPETITION_S = 0.040   # 2.3.a
PCR_DISCONTINUITY_S = 0.100  # 2.3.b
DEFAULT_PID_TIMEOUT_S = 5.0  # 1.6: "user specified period"


def is_ts_payload(payload) -> bool:
    """Whether a datagram payload (bytes or memoryview) is whole 188-byte TS packets, each
    starting with the sync byte 0x47 (ISO/IEC 13818-1 2.4.3.2): how TS over UDP or RTP looks."""
    return len(payload) >= TS_PACKET and len(payload) % TS_PACKET == 0 and \
        all(payload[i] == SYNC for i in range(0, len(payload), TS_PACKET))


def _crc32_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc32_table()


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 (ISO/IEC 13818-1 Annex A); a section including its CRC gives 0."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ byte) & 0xFF]
    return crc


@dataclasses.dataclass(frozen=True)
class TsCounts:
    """TR 101 290 counters (cumulative or per interval) and PCR/stream figures."""

    packets: int = 0
    not_ts_datagrams: int = 0
    ts_sync_loss: int = 0
    sync_byte_error: int = 0
    pat_error: int = 0
    continuity_count_error: int = 0
    lost_packets: int = 0           # TS packets missing according to continuity counters
    pmt_error: int = 0
    pid_error: int = 0
    crc_error: int = 0
    pcr_repetition_error: int = 0
    pcr_discontinuity_error: int = 0
    pcr_count: int = 0
    pcr_max_interval_ms: float = math.nan
    pcr_jitter_ms: float = math.nan  # max |PCR advance - arrival advance| between PCRs

    def minus(self, earlier: "TsCounts") -> "TsCounts":
        """Counters since `earlier` (the PCR figures are this period's own)."""
        values = {}
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(earlier, field.name)
            values[field.name] = mine - theirs if isinstance(mine, int) else mine
        return TsCounts(**values)


def psi_sections(buffers: dict, pid: int, pusi: bool, data: bytes) -> Iterator[bytes]:
    """The whole PSI sections that one TS packet's payload completes (ISO/IEC 13818-1
    2.4.4), reassembled in `buffers` (PID -> the bytes of a section begun): a packet that
    starts a section (`pusi`) skips its pointer field and starts afresh; a continuation
    without a start seen is dropped; 0xFF stuffing ends the packet's sections. The compiled
    probe path (probes/_fast.pyx) uses it too."""
    if pusi:
        pointer = data[0]
        data = data[1 + pointer:]
        buffers[pid] = bytearray()
    elif pid not in buffers:
        return  # continuation of a section whose start we did not see
    buffer = buffers[pid]
    buffer += data
    while len(buffer) >= 3 and buffer[0] != 0xFF:
        length = 3 + (((buffer[1] & 0x0F) << 8) | buffer[2])
        if len(buffer) < length:
            return
        section = bytes(buffer[:length])
        del buffer[:length]
        yield section
    buffer.clear()


@dataclasses.dataclass
class _PidState:
    cc: int | None = None
    duplicate_seen: bool = False
    last_packet: bytes = b""
    last_seen_s: float | None = None


class TsAnalyzer:
    """TR 101 290 priority-1 state machine over a stream of datagram payloads."""

    def __init__(self, pid_timeout_s: float = DEFAULT_PID_TIMEOUT_S, fast_path: bool = True):
        self.pid_timeout_s = pid_timeout_s
        self.fast_path = fast_path
        self._counts = dict.fromkeys(f.name for f in dataclasses.fields(TsCounts)
                                     if f.type in ("int", int))
        for key in self._counts:
            self._counts[key] = 0
        self._pids: dict[int, _PidState] = {}
        self._synced = False
        self._good_syncs = 0
        self._bad_syncs = 0
        self._pmt_pids: dict[int, float | None] = {}    # PMT PID -> last PMT seen
        self._es_pids: dict[int, float | None] = {}     # elementary PIDs named in PMTs
        self._pcr_pids: set[int] = set()
        self._last_pat_s: float | None = None
        self._first_s: float | None = None
        self._sections: dict[int, bytearray] = {}
        self._last_pcr: dict[int, tuple[int, float]] = {}
        self._pcr_max_interval_s = math.nan
        self._pcr_jitter_s = math.nan
        self._interval_start = TsCounts()

    # -- input --------------------------------------------------------------------------
    def feed(self, payload: bytes, arrival_s: float) -> None:
        """One datagram payload (a whole number of TS packets) and its arrival time."""
        if not payload or len(payload) % TS_PACKET or payload[0] != SYNC:
            self._counts["not_ts_datagrams"] += 1
            return
        if self._first_s is None:
            self._first_s = arrival_s
            self._last_pat_s = arrival_s
        if not (self.fast_path and self._synced and self._clean(payload, arrival_s)):
            for offset in range(0, len(payload), TS_PACKET):
                self._packet(payload[offset:offset + TS_PACKET], arrival_s)
        self._check_timeouts(arrival_s)

    def _clean(self, payload: bytes, now: float) -> bool:
        """The common case in one pass, with the same result as _packet() on each packet:
        every packet in sync, payload only (no adaptation field), not PSI, its PID known and
        its continuity counter one more than the last. Anything else returns False before
        changing any state, and the datagram takes the per-packet path."""
        pids, psi = self._pids, self._pmt_pids
        expected: dict[int, int] = {}
        last: dict[int, int] = {}
        for offset in range(0, len(payload), TS_PACKET):
            if payload[offset] != SYNC:
                return False
            pid = ((payload[offset + 1] & 0x1F) << 8) | payload[offset + 2]
            if pid == NULL_PID:
                continue
            flags = payload[offset + 3]
            if flags & 0x30 != 0x10 or pid == PAT_PID or pid in psi:
                return False
            cc = flags & 0x0F
            previous = expected.get(pid)
            if previous is None:
                state = pids.get(pid)
                if state is None or state.cc is None:
                    return False
                previous = state.cc
            if cc != (previous + 1) & 0x0F:
                return False
            expected[pid] = cc
            last[pid] = offset
        count = len(payload) // TS_PACKET
        self._counts["packets"] += count
        self._good_syncs += count
        self._bad_syncs = 0
        for pid, offset in last.items():
            state = pids[pid]
            state.cc = expected[pid]
            state.duplicate_seen = False
            state.last_packet = payload[offset:offset + TS_PACKET]
            state.last_seen_s = now
            if pid in self._es_pids:
                self._es_pids[pid] = now
        return True

    def _sync(self, ok: bool) -> bool:
        """1.1 / 1.2: sync acquired after 5 good sync bytes, lost after 2 bad in a row."""
        if ok:
            self._good_syncs += 1
            self._bad_syncs = 0
            if not self._synced and self._good_syncs >= 5:
                self._synced = True
            return True
        self._good_syncs = 0
        self._bad_syncs += 1
        if self._synced:
            self._counts["sync_byte_error"] += 1
            if self._bad_syncs >= 2:
                self._synced = False
                self._counts["ts_sync_loss"] += 1
        return False

    def _packet(self, pkt: bytes, now: float) -> None:
        self._counts["packets"] += 1
        if not self._sync(pkt[0] == SYNC):
            return
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        pusi = bool(pkt[1] & 0x40)
        scrambling = pkt[3] >> 6
        afc = (pkt[3] >> 4) & 0x3
        cc = pkt[3] & 0x0F
        if pid == NULL_PID:
            return
        state = self._pids.setdefault(pid, _PidState())
        state.last_seen_s = now
        if pid in self._es_pids:
            self._es_pids[pid] = now
        payload_start = 4
        discontinuity = False
        if afc & 0x2:  # adaptation field present
            length = pkt[4]
            payload_start = 5 + length
            if length > 0 and payload_start <= TS_PACKET:
                flags = pkt[5]
                discontinuity = bool(flags & 0x80)
                if flags & 0x10 and length >= 7:
                    self._pcr(pid, pkt[6:12], discontinuity, now)
        self._continuity(state, pkt, cc, afc, discontinuity)
        if pid == PAT_PID or pid in self._pmt_pids:
            if scrambling:
                self._counts["pat_error" if pid == PAT_PID else "pmt_error"] += 1
            elif afc & 0x1 and payload_start < TS_PACKET:
                self._psi(pid, pusi, pkt[payload_start:], now)

    def _continuity(self, state: _PidState, pkt: bytes, cc: int, afc: int,
                    discontinuity: bool) -> None:
        """1.4: CC must grow by 1 (mod 16) on packets with payload; not on adaptation-only
        packets; one duplicate of a packet is allowed; the discontinuity indicator resets it."""
        has_payload = bool(afc & 0x1)
        previous = state.cc
        state.cc = cc
        if previous is None or discontinuity:
            state.duplicate_seen = False
            state.last_packet = pkt
            return
        if not has_payload:
            if cc != previous:
                self._counts["continuity_count_error"] += 1
            return
        if cc == previous:
            if pkt == state.last_packet and not state.duplicate_seen:
                state.duplicate_seen = True  # the one duplicate the standard allows
                return
            self._counts["continuity_count_error"] += 1  # sent more than twice, or not equal
            return
        state.duplicate_seen = False
        state.last_packet = pkt
        missing = (cc - previous - 1) % 16
        if missing:
            self._counts["continuity_count_error"] += 1
            self._counts["lost_packets"] += missing

    def _pcr(self, pid: int, field: bytes, discontinuity: bool, now: float) -> None:
        base = (field[0] << 25) | (field[1] << 17) | (field[2] << 9) | (field[3] << 1) | (field[4] >> 7)
        extension = ((field[4] & 0x1) << 8) | field[5]
        pcr = base * 300 + extension
        self._counts["pcr_count"] += 1
        previous = self._last_pcr.get(pid)
        self._last_pcr[pid] = (pcr, now)
        if previous is None or discontinuity:
            return
        delta_s = ((pcr - previous[0]) % (2 ** 33 * 300)) / PCR_HZ
        backwards = pcr < previous[0] and previous[0] - pcr < 2 ** 32 * 300  # not a wrap
        if backwards or delta_s > PCR_DISCONTINUITY_S:
            self._counts["pcr_discontinuity_error"] += 1
            return
        if delta_s > PCR_REPETITION_S:
            self._counts["pcr_repetition_error"] += 1
        self._pcr_max_interval_s = delta_s if math.isnan(self._pcr_max_interval_s) else \
            max(self._pcr_max_interval_s, delta_s)
        jitter = abs(delta_s - (now - previous[1]))
        self._pcr_jitter_s = jitter if math.isnan(self._pcr_jitter_s) else \
            max(self._pcr_jitter_s, jitter)

    # -- PSI ----------------------------------------------------------------------------
    def _psi(self, pid: int, pusi: bool, data: bytes, now: float) -> None:
        for section in psi_sections(self._sections, pid, pusi, data):
            self._section(pid, section, now)

    def _section(self, pid: int, section: bytes, now: float) -> None:
        table_id = section[0]
        if crc32_mpeg2(section) != 0:
            self._counts["crc_error"] += 1
            return
        if pid == PAT_PID:
            if table_id != 0x00:
                self._counts["pat_error"] += 1
                return
            self._last_pat_s = now
            body = section[8:-4]
            for i in range(0, len(body) - 3, 4):
                program = (body[i] << 8) | body[i + 1]
                map_pid = ((body[i + 2] & 0x1F) << 8) | body[i + 3]
                if program != 0:  # program 0 names the network PID
                    self._pmt_pids.setdefault(map_pid, None)
        elif table_id == 0x02:
            if len(section) < 16:
                self._counts["pmt_error"] += 1  # too short to hold a PMT's fixed fields and CRC
                return
            self._pmt_pids[pid] = now
            pcr_pid = ((section[8] & 0x1F) << 8) | section[9]
            if pcr_pid != NULL_PID:
                self._pcr_pids.add(pcr_pid)
            info_length = ((section[10] & 0x0F) << 8) | section[11]
            i = 12 + info_length
            end = len(section) - 4
            while i + 5 <= end:
                es_pid = ((section[i + 1] & 0x1F) << 8) | section[i + 2]
                self._es_pids.setdefault(es_pid, now)
                i += 5 + (((section[i + 3] & 0x0F) << 8) | section[i + 4])

    def _check_timeouts(self, now: float) -> None:
        """1.3.a / 1.5.a: PAT and each PMT every 0.5 s; 1.6: named PIDs keep coming."""
        if self._last_pat_s is not None and now - self._last_pat_s > PSI_INTERVAL_S:
            self._counts["pat_error"] += 1
            self._last_pat_s = now  # count once per missed interval
        for pid, seen in self._pmt_pids.items():
            reference = seen if seen is not None else self._first_s
            if now - reference > PSI_INTERVAL_S:
                self._counts["pmt_error"] += 1
                self._pmt_pids[pid] = now
        for pid, seen in self._es_pids.items():
            if seen is not None and now - seen > self.pid_timeout_s:
                self._counts["pid_error"] += 1
                self._es_pids[pid] = now

    # -- output -------------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        return self._synced

    @property
    def programs(self) -> dict[str, object]:
        """What the PAT and PMTs announced: PMT PIDs, elementary PIDs, PCR PIDs."""
        return {"pmt_pids": sorted(self._pmt_pids), "es_pids": sorted(self._es_pids),
                "pcr_pids": sorted(self._pcr_pids)}

    def snapshot(self) -> TsCounts:
        return TsCounts(**self._counts,
                        pcr_max_interval_ms=self._pcr_max_interval_s * 1000,
                        pcr_jitter_ms=self._pcr_jitter_s * 1000)

    def interval(self) -> TsCounts:
        """Counters since the previous interval(); PCR figures of this interval only."""
        now = self.snapshot()
        counts = now.minus(self._interval_start)
        self._interval_start = now
        self._pcr_max_interval_s = math.nan
        self._pcr_jitter_s = math.nan
        return counts


@dataclasses.dataclass(frozen=True)
class Mdi:
    """RFC 4445 Media Delivery Index of one interval: "DF:MLR"."""

    delay_factor_ms: float
    media_loss_rate_pps: float

    def __str__(self) -> str:
        return f"{self.delay_factor_ms:.2f}:{self.media_loss_rate_pps:.2f}"


def compute_mdi(arrivals_s, sizes_bytes, media_rate_bps: float, lost_media_packets: int,
                interval_s: float) -> Mdi:
    """RFC 4445 section 3 for one interval.

    DF: a virtual buffer receives each packet's bytes at its arrival time and drains at the
    media rate; VB before and after each arrival is taken, DF = (max VB - min VB) / rate.
    MLR: media (TS) packets lost in the interval, per second.
    """
    if media_rate_bps <= 0 or math.isnan(media_rate_bps):
        raise ValueError(f"media_rate_bps must be positive, got {media_rate_bps}")
    if interval_s <= 0:
        raise ValueError(f"interval_s must be positive, got {interval_s}")
    if len(arrivals_s) != len(sizes_bytes):
        raise ValueError("arrivals_s and sizes_bytes must have the same length")
    if not len(arrivals_s):
        return Mdi(math.nan, lost_media_packets / interval_s)
    rate = media_rate_bps / 8
    start = arrivals_s[0]
    received = 0.0
    vb_min = vb_max = 0.0
    for arrival, size in zip(arrivals_s, sizes_bytes):
        vb_pre = received - rate * (arrival - start)
        received += size
        vb_post = vb_pre + size
        vb_min = min(vb_min, vb_pre)
        vb_max = max(vb_max, vb_post)
    return Mdi((vb_max - vb_min) / rate * 1000, lost_media_packets / interval_s)
