import dataclasses
import math

import pytest
from hypothesis import given, settings, strategies as st

from probes.tsgen import TsMuxer, build_pat
from qoe.mpegts import TS_PACKET, TsAnalyzer, compute_mdi, crc32_mpeg2


def stream(count=300, **muxer):
    return TsMuxer(**muxer).datagrams(count)


def run(datagrams, analyzer=None, start_s=1.0):
    analyzer = analyzer or TsAnalyzer()
    for payload, sent in datagrams:
        analyzer.feed(payload, start_s + sent)
    return analyzer


def packets(datagram: bytes) -> list[bytes]:
    return [datagram[i:i + TS_PACKET] for i in range(0, len(datagram), TS_PACKET)]


def test_crc32_mpeg2_check_value():
    # CRC-32/MPEG-2 catalogue check value for "123456789".
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7
    section = build_pat(1, 0x100)
    assert crc32_mpeg2(section) == 0


def test_clean_stream_has_no_errors_and_finds_the_program():
    analyzer = run(stream())
    counts = analyzer.snapshot()
    errors = {k: v for k, v in vars(counts).items() if k.endswith("error") or k.endswith("loss")}
    assert set(errors.values()) == {0}, errors
    assert counts.packets == 300 * 7 and counts.lost_packets == 0
    assert analyzer.synced
    assert analyzer.programs == {"pmt_pids": [0x100], "es_pids": [0x101], "pcr_pids": [0x101]}
    assert counts.pcr_max_interval_ms == pytest.approx(30, abs=1)


def test_a_lost_datagram_is_seven_lost_packets():
    datagrams = stream()
    del datagrams[100]
    counts = run(datagrams).snapshot()
    assert counts.lost_packets == 7
    assert counts.continuity_count_error >= 1


def test_one_duplicate_is_allowed_a_second_is_an_error():
    datagrams = stream(50)
    payload, sent = datagrams[20]
    first = packets(payload)
    once = b"".join(first[:3] + [first[2]] + first[3:])
    assert run(datagrams[:20] + [(once, sent)] + datagrams[21:]).snapshot() \
        .continuity_count_error == 0
    twice = b"".join(first[:3] + [first[2], first[2]] + first[3:])
    counts = run(datagrams[:20] + [(twice, sent)] + datagrams[21:]).snapshot()
    assert counts.continuity_count_error >= 1


def _adaptation_only(packet: bytes, cc_delta: int, discontinuity: bool = False) -> bytes:
    cc = (packet[3] + cc_delta) & 0x0F
    header = packet[:3] + bytes([0x20 | cc])  # adaptation field only
    field = bytes([TS_PACKET - 5, 0x80 if discontinuity else 0x00])
    return header + field + b"\xff" * (TS_PACKET - 6)


def test_adaptation_only_packets_keep_the_counter():
    datagrams = stream(50)
    payload, sent = datagrams[20]
    group = packets(payload)
    video = group[-1]
    assert video[1:3] == b"\x01\x01"
    same = b"".join(group + [_adaptation_only(video, 0)])  # CC unchanged: correct
    assert run(datagrams[:20] + [(same, sent)] + datagrams[21:]).snapshot() \
        .continuity_count_error == 0
    bumped = b"".join(group + [_adaptation_only(video, 1)])
    assert run(datagrams[:20] + [(bumped, sent)]).snapshot().continuity_count_error == 1


def test_discontinuity_indicator_excuses_a_counter_jump():
    datagrams = stream(50)
    payload, sent = datagrams[20]
    group = packets(payload)
    last = group[-1]
    jumped = last[:3] + bytes([0x30 | ((last[3] + 5) & 0xF)]) + bytes([1, 0x80]) + last[6:]
    counts = run(datagrams[:20] + [(b"".join(group[:6] + [jumped]), sent)]).snapshot()
    assert counts.continuity_count_error == 0


def test_sync_byte_errors_and_sync_loss():
    datagrams = stream(50)
    payload, sent = datagrams[30]
    group = packets(payload)
    one_bad = b"".join(group[:3] + [b"\x46" + group[3][1:]] + group[4:])
    counts = run(datagrams[:30] + [(one_bad, sent)] + datagrams[31:]).snapshot()
    assert (counts.sync_byte_error, counts.ts_sync_loss) == (1, 0)
    two_bad = b"".join(group[:3] + [b"\x00" + g[1:] for g in group[3:5]] + group[5:])
    counts = run(datagrams[:30] + [(two_bad, sent)] + datagrams[31:]).snapshot()
    assert (counts.sync_byte_error, counts.ts_sync_loss) == (2, 1)


def test_missing_pat_and_pmt_are_errors():
    video_only = [(b"".join(p for p in packets(d) if p[1:3] == b"\x01\x01"), t)
                  for d, t in stream(400)]
    video_only = [(d, t) for d, t in video_only if d]
    analyzer = TsAnalyzer()
    run(stream(20), analyzer)                 # PAT and PMT seen, then they stop
    run(video_only, analyzer, start_s=1.1)
    counts = analyzer.snapshot()
    assert counts.pat_error >= 1 and counts.pmt_error >= 1


def test_corrupt_psi_is_a_crc_error_and_wrong_table_on_pid_0_a_pat_error():
    datagrams = stream(10)
    payload, sent = datagrams[0]
    group = packets(payload)
    pat = bytearray(group[0])
    pat[12] ^= 0xFF
    counts = run([(b"".join([bytes(pat)] + group[1:]), sent)]).snapshot()
    assert counts.crc_error == 1
    pmt_on_pid0 = group[1][:1] + b"\x40\x00" + group[1][3:]
    counts = run([(b"".join([pmt_on_pid0] + group[1:]), sent)]).snapshot()
    assert counts.pat_error == 1


def test_slow_pcr_is_a_repetition_error():
    counts = run(stream(400, pcr_interval_s=0.05)).snapshot()
    assert counts.pcr_repetition_error > 0 and counts.pcr_discontinuity_error == 0
    assert counts.pcr_max_interval_ms == pytest.approx(50, abs=1)


def test_interval_counts_and_not_ts_payloads():
    analyzer = TsAnalyzer()
    datagrams = stream(200)
    run(datagrams[:100], analyzer)
    analyzer.interval()
    del datagrams[150]
    run(datagrams[100:], analyzer)
    analyzer.feed(b"GET / HTTP/1.1\r\n", 5.0)
    second = analyzer.interval()
    assert second.lost_packets == 7 and second.not_ts_datagrams == 1
    assert second.packets == 99 * 7


def test_mdi_of_a_cbr_stream_and_a_late_burst():
    datagrams = stream(266)  # about one second at 4 Mbit/s
    arrivals = [t for _, t in datagrams]
    sizes = [len(d) for d, _ in datagrams]
    mdi = compute_mdi(arrivals, sizes, 4_000_000, lost_media_packets=0, interval_s=1.0)
    one_datagram_ms = 7 * 188 * 8 / 4_000_000 * 1000
    assert mdi.delay_factor_ms == pytest.approx(one_datagram_ms, rel=0.01)
    late = arrivals[:100] + [t + 0.010 for t in arrivals[100:110]] + arrivals[110:]
    late = sorted(late)
    mdi = compute_mdi(late, sizes, 4_000_000, lost_media_packets=7, interval_s=1.0)
    assert mdi.delay_factor_ms == pytest.approx(one_datagram_ms + 10, rel=0.05)
    assert mdi.media_loss_rate_pps == 7.0 and str(mdi).endswith(":7.00")
    assert math.isnan(compute_mdi([], [], 1e6, 0, 1.0).delay_factor_ms)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=3 * TS_PACKET), max_size=20))
def test_garbage_never_raises(payloads):
    analyzer = TsAnalyzer()
    for i, payload in enumerate(payloads):
        analyzer.feed(b"\x47" + payload if i % 2 else payload, float(i))
    counts = analyzer.snapshot()
    assert counts.packets + counts.not_ts_datagrams <= sum(len(p) for p in payloads) + len(payloads)


def _state(analyzer: TsAnalyzer) -> tuple:
    pids = {pid: (s.cc, s.duplicate_seen, s.last_packet, s.last_seen_s)
            for pid, s in analyzer._pids.items()}  # pylint: disable=protected-access
    counts = tuple(None if isinstance(v, float) and math.isnan(v) else v
                   for v in dataclasses.astuple(analyzer.snapshot()))  # NaN != NaN
    return (counts, pids, analyzer.synced, analyzer.programs)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["keep", "drop", "repeat", "sync", "cc", "flip"]),
                          st.integers(0, 6), st.integers(0, 255)), min_size=0, max_size=40),
       st.integers(0, 2 ** 32 - 1))
def test_the_fast_path_gives_exactly_what_the_per_packet_path_gives(edits, seed):
    """Streams with lost, repeated and corrupted datagrams: the one-pass path for clean
    datagrams must leave the same counters and the same per-PID state as packet by packet."""
    datagrams = [bytearray(d) for d, _ in stream(120, bitrate_bps=2_000_000 + seed % 3_000_000)]
    out = []
    for index, payload in enumerate(datagrams):
        action, packet, value = edits[index % len(edits)] if edits and index % 3 == 0 \
            else ("keep", 0, 0)
        at = packet * TS_PACKET
        if action == "drop":
            continue
        if action == "sync":
            payload[at] = value if value != 0x47 else 0
        elif action == "cc":
            payload[at + 3] = (payload[at + 3] & 0xF0) | (value & 0x0F)
        elif action == "flip":
            payload[at + 1 + value % 187] ^= 0xFF
        out.append(bytes(payload))
        if action == "repeat":
            out.append(bytes(payload))
    fast, slow = TsAnalyzer(), TsAnalyzer(fast_path=False)
    for i, payload in enumerate(out):
        fast.feed(payload, 1.0 + i * 0.003)
        slow.feed(payload, 1.0 + i * 0.003)
    assert _state(fast) == _state(slow)
