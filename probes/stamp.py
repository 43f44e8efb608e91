"""STAMP (RFC 8762) unauthenticated test packets and session statistics (core, no I/O).

Source: RFC 8762, "Simple Two-Way Active Measurement Protocol": section 4.2.1 (session-
sender test packet, unauthenticated mode: sequence number, timestamp, error estimate, MBZ;
44 octets) and 4.3.1 (session-reflector test packet: its own sequence number, transmit
timestamp and error estimate, the receive timestamp, and the sender's sequence number,
timestamp, error estimate and TTL). Timestamps are 64-bit NTP format (RFC 5905 6); the error
estimate follows RFC 4656 4.1.2 (S: synchronised, Z: timestamp format, scale, multiplier).

With T1 sender transmit, T2 reflector receive, T3 reflector transmit, T4 sender receive:
round-trip delay = (T4 - T1) - (T3 - T2); one-way delays T2 - T1 and T4 - T3 are meaningful
only when both clocks are synchronised (both S bits set, or one clock, as between network
namespaces of one host).
"""

import dataclasses
import math
import struct

PACKET_SIZE = 44
DEFAULT_PORT = 862
_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_SENDER = struct.Struct("!IQH30x")
_REFLECTOR = struct.Struct("!IQH2xQIQH2xB3x")


def ntp_from_unix(unix_s: float) -> int:
    """Unix time (s) -> 64-bit NTP timestamp (32.32 fixed point)."""
    seconds = math.floor(unix_s)
    fraction = int((unix_s - seconds) * (1 << 32)) & 0xFFFFFFFF
    return ((seconds + _NTP_EPOCH_OFFSET) & 0xFFFFFFFF) << 32 | fraction


def unix_from_ntp(ntp: int) -> float:
    return (ntp >> 32) - _NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / (1 << 32)


def error_estimate(synchronised: bool, scale: int = 0, multiplier: int = 1) -> int:
    """RFC 4656 4.1.2: S bit, Z = 0 (NTP format), 6-bit scale, 8-bit multiplier."""
    return (0x8000 if synchronised else 0) | ((scale & 0x3F) << 8) | (multiplier & 0xFF)


@dataclasses.dataclass(frozen=True)
class SenderPacket:
    sequence: int
    timestamp: int
    error_estimate: int


@dataclasses.dataclass(frozen=True)
class ReflectorPacket:
    sequence: int
    timestamp: int            # T3, reflector transmit
    error_estimate: int
    receive_timestamp: int    # T2
    sender_sequence: int
    sender_timestamp: int     # T1
    sender_error_estimate: int
    sender_ttl: int


def build_sender_packet(packet: SenderPacket) -> bytes:
    return _SENDER.pack(packet.sequence, packet.timestamp, packet.error_estimate)


def parse_sender_packet(data: bytes) -> SenderPacket | None:
    """A datagram -> SenderPacket, or None if it is shorter than a STAMP test packet.

    Longer packets are accepted (RFC 8762 4.2.1 allows padding for larger tests)."""
    if len(data) < PACKET_SIZE:
        return None
    return SenderPacket(*_SENDER.unpack_from(data))


def build_reflector_packet(packet: ReflectorPacket) -> bytes:
    return _REFLECTOR.pack(packet.sequence, packet.timestamp, packet.error_estimate,
                           packet.receive_timestamp, packet.sender_sequence,
                           packet.sender_timestamp, packet.sender_error_estimate,
                           packet.sender_ttl)


def parse_reflector_packet(data: bytes) -> ReflectorPacket | None:
    if len(data) < PACKET_SIZE:
        return None
    return ReflectorPacket(*_REFLECTOR.unpack_from(data))


def reflect(request: SenderPacket, reflector_sequence: int, t2_unix_s: float, t3_unix_s: float,
            ttl: int, synchronised: bool = False) -> ReflectorPacket:
    """The session-reflector's answer to one test packet (stateful: own sequence numbers)."""
    return ReflectorPacket(reflector_sequence, ntp_from_unix(t3_unix_s),
                           error_estimate(synchronised), ntp_from_unix(t2_unix_s),
                           request.sequence, request.timestamp, request.error_estimate, ttl)


@dataclasses.dataclass(frozen=True)
class StampResult:
    """What one STAMP session measured."""

    sent: int
    received: int
    lost: int
    duplicates: int
    reordered: int
    rtt_ms: tuple[float, ...]          # per answered packet, in arrival order
    forward_ms: tuple[float, ...]      # T2 - T1 (meaningful with one or synchronised clocks)
    backward_ms: tuple[float, ...]     # T4 - T3
    malformed: int

    @property
    def loss_ratio(self) -> float:
        return self.lost / self.sent if self.sent else math.nan

    @property
    def rtt_mean_ms(self) -> float:
        return sum(self.rtt_ms) / len(self.rtt_ms) if self.rtt_ms else math.nan

    @property
    def jitter_ms(self) -> float:
        """Mean absolute difference of consecutive round-trip delays (IPDV, RFC 3393)."""
        diffs = [abs(b - a) for a, b in zip(self.rtt_ms, self.rtt_ms[1:])]
        return sum(diffs) / len(diffs) if diffs else math.nan


class StampSession:
    """Session-sender bookkeeping: what was sent when, and the answers that came back."""

    def __init__(self):
        self._sent: dict[int, float] = {}
        self._answered: set[int] = set()
        self._highest = -1
        self._duplicates = 0
        self._reordered = 0
        self._malformed = 0
        self._rtt: list[float] = []
        self._forward: list[float] = []
        self._backward: list[float] = []

    def next_packet(self, t1_unix_s: float, synchronised: bool = False) -> bytes:
        sequence = len(self._sent)
        self._sent[sequence] = t1_unix_s
        return build_sender_packet(SenderPacket(sequence, ntp_from_unix(t1_unix_s),
                                                error_estimate(synchronised)))

    def receive(self, data: bytes, t4_unix_s: float) -> None:
        answer = parse_reflector_packet(data)
        if answer is None or answer.sender_sequence not in self._sent:
            self._malformed += 1
            return
        if answer.sender_sequence in self._answered:
            self._duplicates += 1
            return
        self._answered.add(answer.sender_sequence)
        if answer.sender_sequence < self._highest:
            self._reordered += 1
        self._highest = max(self._highest, answer.sender_sequence)
        t1 = self._sent[answer.sender_sequence]
        t2 = unix_from_ntp(answer.receive_timestamp)
        t3 = unix_from_ntp(answer.timestamp)
        self._rtt.append(((t4_unix_s - t1) - (t3 - t2)) * 1000)
        self._forward.append((t2 - t1) * 1000)
        self._backward.append((t4_unix_s - t3) * 1000)

    def result(self) -> StampResult:
        sent, received = len(self._sent), len(self._answered)
        return StampResult(sent, received, sent - received, self._duplicates, self._reordered,
                           tuple(self._rtt), tuple(self._forward), tuple(self._backward),
                           self._malformed)
