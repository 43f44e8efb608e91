"""RTP header parsing and stream statistics after RFC 3550 (core, no I/O).

Source: RFC 3550, "RTP: A Transport Protocol for Real-Time Applications": section 5.1 (the
fixed header), Appendix A.1 (sequence number validity with wrap-around, MAX_DROPOUT and
MAX_MISORDER), A.3 (expected and lost packets) and A.8 (interarrival jitter,
J += (|D| - J) / 16). Clock rates of static payload types: RFC 3551 section 6, Table 4/5.

RtpStreamStats is fed one packet at a time by the passive probe (and by tests); `snapshot()`
gives cumulative figures (A.3: expected - received, as Wireshark counts) and `interval()` the
figures since the previous interval, so loss is reported per window, never only cumulatively.

An interval counts as expected and lost only sequence numbers that can no longer arrive in
order: those at least REORDER_WINDOW below the highest received. A gap nearer the top is
carried over to the next interval, so a packet that is late by a few positions and arrives
just after an interval boundary is not counted lost in the interval before it. At the end
of a stream (`interval(final=True)`) everything is settled, so the intervals' losses add up to
the cumulative loss. Within each interval the A.8 jitter estimate's maximum and mean are
kept besides its end value (a peak inside an interval is not lost), and lost packets are
grouped into bursts (runs of consecutive lost sequence numbers).
"""

import dataclasses
import struct

# RFC 3551 Tables 4 and 5: static payload types and their RTP clock rates (Hz).
STATIC_CLOCK_RATES = {
    0: 8000, 3: 8000, 4: 8000, 5: 8000, 6: 16000, 7: 8000, 8: 8000, 9: 8000, 10: 44100,
    11: 44100, 12: 8000, 13: 8000, 14: 90000, 15: 8000, 16: 11025, 17: 22050, 18: 8000,
    25: 90000, 26: 90000, 28: 90000, 31: 90000, 32: 90000, 33: 90000, 34: 90000,
}

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000    # RFC 3550 A.1
MAX_MISORDER = 100    # RFC 3550 A.1
_DUPLICATE_WINDOW = 1024  # sequence numbers remembered to tell duplicates from reordering
# A packet this many positions behind the highest received is too late for any jitter
# buffer of a voice or video call (8 packets: 160 ms of 20 ms voice); from there on its
# absence is a loss.
REORDER_WINDOW = 8


@dataclasses.dataclass(frozen=True)
class RtpHeader:
    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload_offset: int  # where the payload starts in the datagram


def parse_rtp_header(data: bytes) -> RtpHeader | None:
    """A UDP payload -> its RTP header (RFC 3550 5.1), or None if it is not valid RTP.

    Valid means: version 2, room for the CSRC list and the header extension it announces,
    padding no longer than the payload, and a payload type that is not an RTCP packet type
    (72-76 with the marker bit, RFC 3550 A.1 / RFC 5761 section 4).
    """
    if len(data) < 12:
        return None
    first, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
    version = first >> 6
    if version != 2:
        return None
    csrc_count = first & 0x0F
    offset = 12 + 4 * csrc_count
    extension = bool(first & 0x10)
    if len(data) < offset:
        return None
    if extension:
        if len(data) < offset + 4:
            return None
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
        if len(data) < offset:
            return None
    payload_type = second & 0x7F
    if 72 <= payload_type <= 76:
        return None
    padding = bool(first & 0x20)
    if padding and (data[-1] == 0 or data[-1] > len(data) - offset):
        return None
    return RtpHeader(version, padding, extension, csrc_count, bool(second & 0x80), payload_type,
                     sequence, timestamp, ssrc, offset)


@dataclasses.dataclass(frozen=True)
class RtpCounts:
    """Statistics of an RTP stream (cumulative, or for one interval)."""

    received: int          # packets, duplicates included
    expected: int          # from the extended sequence numbers (A.3)
    lost: int              # expected - unique received, never below 0 for an interval
    duplicates: int
    reordered: int         # arrived after a higher sequence number (not duplicates)
    jitter_ms: float       # A.8 estimate at the end of the period; NaN before two packets
    restarts: int          # sequence jumps beyond MAX_DROPOUT taken as a new source state
    jitter_max_ms: float = float("nan")   # of the estimate within the period
    jitter_mean_ms: float = float("nan")  # of the estimate after each packet of the period
    loss_bursts: int = 0   # runs of consecutive lost sequence numbers (settled in the period)

    @property
    def mean_burst_packets(self) -> float:
        """Mean length of a loss burst, in packets; NaN without loss."""
        return self.lost / self.loss_bursts if self.loss_bursts else float("nan")

    @property
    def loss_ratio(self) -> float:
        """lost / expected (0..1); NaN when nothing was expected."""
        return self.lost / self.expected if self.expected > 0 else float("nan")


class RtpStreamStats:
    """Per-SSRC statistics, updated packet by packet (RFC 3550 A.1, A.3, A.8)."""

    def __init__(self, clock_rate_hz: int):
        if clock_rate_hz <= 0:
            raise ValueError(f"clock_rate_hz must be positive, got {clock_rate_hz}")
        self.clock_rate_hz = clock_rate_hz
        self._base = None          # first extended sequence number
        self._max = None           # highest extended sequence number
        self._bad_seq = None       # A.1: candidate after a big jump
        self._expected_before = 0  # expected packets of earlier numbering epochs (restarts)
        self._seen: set[int] = set()
        self._received = 0
        self._unique = 0
        self._duplicates = 0
        self._reordered = 0
        self._restarts = 0
        self._jitter = 0.0         # in timestamp units
        self._last_transit = None
        self._interval_start = RtpCounts(0, 0, 0, 0, 0, float("nan"), 0)
        self._interval_unique = 0
        # settled: sequence numbers counted as received or lost for good
        self._settled_upto = None  # highest settled extended sequence number
        self._settled_expected = 0
        self._settled_lost = 0
        self._bursts = 0
        self._previous_lost = False
        self._interval_settled = (0, 0, 0)  # (expected, lost, bursts) at the interval start
        self._jitter_max = float("nan")     # within the interval, timestamp units
        self._jitter_sum = 0.0
        self._jitter_samples = 0

    def update(self, sequence: int, timestamp: int, arrival_s: float) -> None:
        """One packet: its sequence number, RTP timestamp and arrival time in seconds."""
        self._received += 1
        extended = self._extend(sequence)
        if extended is None:
            return
        if extended in self._seen:
            self._duplicates += 1
            return
        self._seen.add(extended)
        if len(self._seen) > 2 * _DUPLICATE_WINDOW:
            floor = self._max - _DUPLICATE_WINDOW
            self._seen = {s for s in self._seen if s > floor}
        self._unique += 1
        if extended < self._base:  # arrived late but belongs before the first one seen
            self._base = extended
        if self._settled_upto is None:
            self._settled_upto = extended - 1
        if extended < self._max:
            self._reordered += 1
        else:
            self._max = extended
            self._settle(self._max - REORDER_WINDOW)
        self._update_jitter(timestamp, arrival_s)

    def _settle(self, upto: int) -> None:
        """Count every sequence number up to `upto` as received or lost, for good."""
        if self._settled_upto is None or upto <= self._settled_upto:
            return
        for sequence in range(self._settled_upto + 1, upto + 1):
            lost = sequence not in self._seen
            if lost:
                self._settled_lost += 1
                if not self._previous_lost:
                    self._bursts += 1
            self._previous_lost = lost
        self._settled_expected += upto - self._settled_upto
        self._settled_upto = upto

    def _extend(self, sequence: int) -> int | None:
        """RFC 3550 A.1: 16-bit sequence number -> extended sequence number (None: probation)."""
        if self._max is None:
            self._base = self._max = sequence
            return sequence
        max_low = self._max % RTP_SEQ_MOD
        udelta = (sequence - max_low) % RTP_SEQ_MOD
        if udelta < MAX_DROPOUT:  # in order, with a permissible gap (maybe wrapping)
            return self._max + udelta
        if udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # A very large jump: the source restarted, or a stray packet. A.1 accepts it
            # only when the next packet follows it; until then it is not counted.
            if sequence == self._bad_seq:
                self._restart(sequence)
                return sequence
            self._bad_seq = (sequence + 1) % RTP_SEQ_MOD
            return None
        # A duplicate or reordered packet from just before max (maybe of the previous cycle).
        return self._max - (max_low - sequence) % RTP_SEQ_MOD

    def _restart(self, sequence: int) -> None:
        """A confirmed sequence restart (A.1): close this numbering epoch, start a new one."""
        self._restarts += 1
        self._settle(self._max)  # the old numbering is over: all of it is settled
        self._settled_upto = sequence - 1
        self._previous_lost = False
        self._expected_before += self._max - self._base + 1
        self._base = self._max = sequence
        self._seen = set()
        self._bad_seq = None
        self._last_transit = None

    def _update_jitter(self, timestamp: int, arrival_s: float) -> None:
        """RFC 3550 A.8: transit = arrival (timestamp units) - timestamp; J += (|D| - J)/16."""
        transit = arrival_s * self.clock_rate_hz - timestamp
        if self._last_transit is not None:
            d = transit - self._last_transit
            # RTP timestamps wrap at 2^32: take the difference modulo 2^32, signed.
            d = (d + 2 ** 31) % 2 ** 32 - 2 ** 31
            self._jitter += (abs(d) - self._jitter) / 16
            self._jitter_max = self._jitter if not self._jitter_max >= self._jitter \
                else self._jitter_max
            self._jitter_sum += self._jitter
            self._jitter_samples += 1
        self._last_transit = transit

    def _expected(self) -> int:
        return self._expected_before + (0 if self._max is None else self._max - self._base + 1)

    def snapshot(self) -> RtpCounts:
        """Cumulative counts since the first packet."""
        expected = self._expected()
        jitter_ms = (self._jitter / self.clock_rate_hz * 1000 if self._unique > 1
                     else float("nan"))
        return RtpCounts(self._received, expected, max(0, expected - self._unique),
                         self._duplicates, self._reordered, jitter_ms, self._restarts)

    def unsettled(self) -> bool:
        """Whether sequence numbers near the top are still waiting to be counted."""
        return self._max is not None and self._settled_upto is not None and \
            self._settled_upto < self._max

    def interval(self, final: bool = False) -> RtpCounts:
        """Counts since the previous interval() call: expected and lost of the sequence
        numbers settled in it (with `final`, at the stream's end, all of them); jitter: the
        estimate now, and its maximum and mean within the interval."""
        if final and self._max is not None:
            self._settle(self._max)
        now = self.snapshot()
        start = self._interval_start
        expected0, lost0, bursts0 = self._interval_settled
        scale = 1000 / self.clock_rate_hz
        counts = RtpCounts(
            now.received - start.received, self._settled_expected - expected0,
            self._settled_lost - lost0, now.duplicates - start.duplicates,
            now.reordered - start.reordered, now.jitter_ms, now.restarts - start.restarts,
            self._jitter_max * scale if self._jitter_samples else float("nan"),
            self._jitter_sum / self._jitter_samples * scale if self._jitter_samples
            else float("nan"),
            self._bursts - bursts0)
        self._interval_start = now
        self._interval_unique = self._unique
        self._interval_settled = (self._settled_expected, self._settled_lost, self._bursts)
        self._jitter_max = float("nan")
        self._jitter_sum, self._jitter_samples = 0.0, 0
        return counts
