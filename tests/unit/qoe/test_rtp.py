import math
import struct

import pytest
from hypothesis import given, settings, strategies as st

from qoe.rtp import STATIC_CLOCK_RATES, RtpStreamStats, parse_rtp_header

PTIME_S = 0.02
SAMPLES = 160  # G.711 at 8 kHz, 20 ms


def feed(stats, sequences, start_seq=0, jitter_s=lambda i: 0.0):
    """Packets numbered i (offset by start_seq, mod 2^16), sent every 20 ms."""
    for i in sequences:
        stats.update((start_seq + i) % 65536, (i * SAMPLES) % 2 ** 32, 1.0 + i * PTIME_S + jitter_s(i))


def rtp(pt=0, seq=1, ts=160, ssrc=7, csrc=0, ext_words=None, pad=0, payload=b"x" * 160, marker=0):
    first = 0x80 | csrc | (0x10 if ext_words is not None else 0) | (0x20 if pad else 0)
    data = struct.pack("!BBHII", first, (marker << 7) | pt, seq, ts, ssrc) + b"\0\0\0\1" * csrc
    if ext_words is not None:
        data += struct.pack("!HH", 0xBEDE, ext_words) + b"\0" * 4 * ext_words
    data += payload
    if pad:
        data += b"\0" * (pad - 1) + bytes([pad])
    return data


def test_header_fields_and_payload_offset():
    header = parse_rtp_header(rtp(pt=8, seq=513, ts=99, ssrc=0xABCD, csrc=2, ext_words=1))
    assert (header.payload_type, header.sequence, header.timestamp, header.ssrc) == (8, 513, 99, 0xABCD)
    assert header.payload_offset == 12 + 8 + 4 + 4
    assert STATIC_CLOCK_RATES[header.payload_type] == 8000 and STATIC_CLOCK_RATES[33] == 90000


@pytest.mark.parametrize("data", [
    b"\x80\x00\x00",                            # shorter than the fixed header
    b"\x40" + rtp()[1:],                        # version 1
    rtp(csrc=3, payload=b"")[:20],              # CSRC list cut short
    rtp(ext_words=4, payload=b"")[:18],         # header extension cut short
    rtp(pt=72, marker=1),                       # an RTCP sender report
    bytes([0xA0]) + rtp(payload=b"ab")[1:-1] + b"\xff",  # padding longer than the payload
])
def test_invalid_rtp_is_rejected(data):
    assert parse_rtp_header(data) is None


def test_valid_padding_is_accepted():
    assert parse_rtp_header(rtp(pad=4)).padding


def test_clean_stream():
    stats = RtpStreamStats(8000)
    feed(stats, range(100))
    counts = stats.snapshot()
    assert (counts.received, counts.expected, counts.lost, counts.duplicates, counts.reordered) == \
        (100, 100, 0, 0, 0)
    assert counts.jitter_ms == pytest.approx(0.0, abs=1e-9)
    assert counts.loss_ratio == 0.0


def test_loss_across_the_sequence_wrap():
    stats = RtpStreamStats(8000)
    kept = [i for i in range(200) if i not in (3, 50, 51, 120, 199 - 1)]
    feed(stats, kept, start_seq=65500)
    counts = stats.snapshot()
    assert counts.expected == 200 and counts.lost == 5
    assert counts.loss_ratio == pytest.approx(0.025)


def test_duplicates_and_reordering_are_not_loss():
    stats = RtpStreamStats(8000)
    feed(stats, [0, 1, 2, 4, 3, 5, 5, 6, 8, 7, 9])
    counts = stats.snapshot()
    assert (counts.received, counts.expected, counts.lost) == (11, 10, 0)
    assert counts.duplicates == 1 and counts.reordered == 2


def test_jitter_follows_rfc3550_a8():
    # Transit alternates +-2 ms around a constant: |D| = 4 ms, so J converges to 4 ms.
    stats = RtpStreamStats(8000)
    feed(stats, range(400), jitter_s=lambda i: 0.002 if i % 2 else -0.002)
    assert stats.snapshot().jitter_ms == pytest.approx(4.0, rel=1e-3)
    # The estimator itself, step by step: J1 = |D| / 16 after the second packet.
    first = RtpStreamStats(8000)
    feed(first, [0, 1], jitter_s=lambda i: 0.016 * i)
    assert first.snapshot().jitter_ms == pytest.approx(16.0 / 16)


def test_intervals_report_their_own_loss():
    stats = RtpStreamStats(8000)
    feed(stats, range(50))
    assert stats.interval().lost == 0
    feed(stats, [i for i in range(50, 100) if i % 10])
    second = stats.interval()
    assert (second.expected, second.lost) == (50, 5)
    assert stats.interval().expected == 0 and math.isnan(stats.interval().loss_ratio)


def test_a_sequence_restart_is_not_counted_as_loss():
    stats = RtpStreamStats(8000)
    feed(stats, range(20))
    feed(stats, range(20), start_seq=30000)  # the sender restarted its numbering
    counts = stats.snapshot()
    assert counts.restarts == 1
    assert counts.lost == 0 and counts.expected == 20 + 19  # the probation packet is not counted


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 65535), st.integers(3, 300), st.data())
def test_any_mix_of_loss_duplicates_and_small_reordering(start, count, data):
    drop = data.draw(st.sets(st.integers(1, count - 2)))
    dup = data.draw(st.sets(st.integers(0, count - 1)))
    order = [i for i in range(count) if i not in drop]
    swaps = data.draw(st.lists(st.integers(0, max(0, len(order) - 2)), max_size=10))
    for k in swaps:
        order[k], order[k + 1] = order[k + 1], order[k]
    sent = []
    for i in order:
        sent.append(i)
        if i in dup:
            sent.append(i)
    stats = RtpStreamStats(8000)
    feed(stats, sent, start_seq=start)
    counts = stats.snapshot()
    assert counts.received == len(sent)
    assert counts.duplicates == len(sent) - len(order)
    assert counts.expected == count  # first and last are never dropped
    assert counts.lost == len(drop)
    assert counts.reordered <= len(swaps)


def test_a_packet_late_across_an_interval_boundary_is_not_counted_lost():
    stats = RtpStreamStats(8000)
    feed(stats, [i for i in range(50) if i != 47])  # 47 is late: it comes after the boundary
    first = stats.interval()
    feed(stats, [47] + list(range(50, 100)))
    second = stats.interval(final=True)
    assert first.lost == 0 and second.lost == 0
    assert first.expected + second.expected == 100


def test_interval_losses_add_up_to_the_cumulative_loss_and_come_in_bursts():
    stats = RtpStreamStats(8000)
    lost = {5, 6, 7, 30, 61, 62, 99}
    intervals = []
    for chunk in (range(0, 33), range(33, 66), range(66, 100)):
        feed(stats, [i for i in chunk if i not in lost])
        intervals.append(stats.interval(final=chunk.stop == 100))
    assert sum(c.lost for c in intervals) == stats.snapshot().lost == 6  # 99 is past the end
    assert sum(c.expected for c in intervals) == 99
    assert sum(c.loss_bursts for c in intervals) == 3
    # the first interval settles up to 24 (its highest, 32, minus the reorder window): the
    # burst 5-7 is in it, 30 is carried over to the second
    assert (intervals[0].lost, intervals[0].mean_burst_packets) == (3, 3.0)
    assert [(c.lost, c.loss_bursts) for c in intervals[1:]] == [(1, 1), (2, 1)]


def test_a_jitter_peak_inside_an_interval_is_kept_beside_the_end_value():
    stats = RtpStreamStats(8000)
    feed(stats, range(50), jitter_s=lambda i: 0.03 if i == 20 else 0.0)  # one packet 30 ms late
    counts = stats.interval()
    assert counts.jitter_max_ms > 3.0 > counts.jitter_ms
    assert counts.jitter_ms < counts.jitter_mean_ms < counts.jitter_max_ms
    feed(stats, range(50, 60))
    assert stats.interval().jitter_max_ms < counts.jitter_max_ms  # each interval its own
