"""The compiled hot path (probes/_fast.pyx) against the pure-Python reference (probes.decode,
probes.flows, qoe.rtp, qoe.mpegts): the same records field by field, the same counters, on
the benchmark's capture, the tshark comparison streams, generated RTP, MPEG-TS and TCP
streams (loss, duplicates, reordering, wrap-around, restarts, corrupted and truncated
frames) and fuzzed frames.

scripts/setup.sh builds the extension, so these tests fail rather than skip when it is
missing; CEMS_SKIP_FAST=1 skips them on a machine without a C compiler.
"""

import os
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from probes import craft
from probes import decode as reference_decode
from probes.flows import FlowTable
from probes.passive import ProbeCounters, record_json, run_frames
from probes.tsgen import TsMuxer
from tests.fuzz.fuzz import mutate_frame

if os.environ.get("CEMS_SKIP_FAST") == "1":
    fast = pytest.importorskip("probes._fast")
else:
    from probes import _fast as fast  # built by scripts/setup.sh (make test)

SLOW = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run_both(frames, interval_s=1.0, max_flows=100_000, idle_timeout_s=60.0):
    """Records (as JSON lines) and counters of both paths over the same frames."""
    results = []
    for table in (FlowTable(max_flows, idle_timeout_s), fast.FastFlowTable(max_flows,
                                                                             idle_timeout_s)):
        records = []
        counters = run_frames(iter(frames), interval_s,
                              lambda batch: records.extend(record_json(r) for r in batch),
                              table, ProbeCounters())
        results.append((records, counters.frames, dict(counters.malformed),
                        counters.time_jumps, table.evicted, table.expired, len(table)))
    return results


def assert_same(frames, **kwargs):
    python, compiled = run_both(frames, **kwargs)
    assert compiled[0] == python[0]  # records, field by field
    assert compiled[1:] == python[1:]
    return python[0]


def mixed_capture(count: int) -> list:
    """The benchmark's mix: G.711 voice, MPEG-TS over UDP with PAT/PMT/PCR, and TCP."""
    out = []
    ts = [d for d, _ in TsMuxer().datagrams(count // 3 + 1)]
    for i in range(count):
        t = i * 1e-3
        kind = i % 3
        if kind == 0:
            frame = craft.udp_frame("10.0.0.1", f"10.1.{(i // 3) % 5}.2", 4000 + (i // 3) % 5,
                                    5004, craft.rtp_packet(i // 15, i * 160, ssrc=(i // 3) % 5))
        elif kind == 1:
            frame = craft.udp_frame("10.0.0.9", "239.1.1.1", 5000, 1234, ts[i // 3])
        else:
            frame = craft.tcp_frame("10.0.0.5", "10.2.0.7", 40000 + (i // 3) % 4, 80,
                                    i * 1448, 1, 0x10, b"d" * 1448)
        out.append((t, frame))
    return out


def test_the_benchmark_capture():
    records = assert_same(mixed_capture(6000))
    assert any('"kind": "mpegts"' in r for r in records) and any('"kind": "rtp"' in r
                                                                 for r in records)


@pytest.mark.parametrize("seed, lost, max_jitter_s, swaps", [
    (1, {40, 41, 300}, 0.006, 0), (2, set(range(100, 110)), 0.012, 0), (3, {7}, 0.002, 0),
    (4, {200, 250}, 0.008, 5)])
def test_the_tshark_comparison_streams(seed, lost, max_jitter_s, swaps):
    rng = random.Random(seed)
    frames = [(1.0 + i * 0.02 + rng.uniform(0, max_jitter_s),
               craft.udp_frame("10.0.0.1", "10.0.0.2", 4000, 5004, craft.rtp_packet(i, i * 160)))
              for i in range(500) if i not in lost]
    frames.sort()
    for _ in range(swaps):
        k = rng.randrange(10, len(frames) - 10)
        (t1, f1), (t2, f2) = frames[k], frames[k + 1]
        frames[k], frames[k + 1] = (t1, f2), (t2, f1)
    assert_same(frames)


def rtp_with(sequence, timestamp, ssrc, payload_type, extension, csrcs, padding):
    first = 0x80 | (0x10 if extension else 0) | (0x20 if padding else 0) | csrcs
    header = struct.pack("!BBHII", first, payload_type, sequence & 0xFFFF,
                         timestamp & 0xFFFFFFFF, ssrc) + bytes(4 * csrcs)
    if extension:
        header += struct.pack("!HH", 0xBEDE, 1) + bytes(4)
    body = b"\xd5" * 160
    if padding:
        body += bytes(3) + b"\x04"
    return header + body


rtp_events = st.lists(st.tuples(
    st.sampled_from(["next", "next", "next", "next", "lose", "duplicate", "swap", "jump",
                     "ssrc", "odd_header", "truncate", "corrupt"]),
    st.floats(0, 0.03)), min_size=1, max_size=400)


@SLOW
@given(st.integers(0, 65535), st.sampled_from([0, 8, 33, 96, 18]), rtp_events,
       st.sampled_from([0.2, 1.0]))
def test_generated_rtp_streams(first_sequence, payload_type, events, interval_s):
    frames, sequence, when, ssrc = [], first_sequence, 10.0, 0x1234
    ts_payload = [d for d, _ in TsMuxer().datagrams(len(events) + 1)]
    for n, (event, delay) in enumerate(events):
        when += 0.02 + delay
        if event == "lose":
            sequence += 1
            continue
        if event == "jump":
            sequence += random.Random(n).choice([3500, 40000, 65500])
        if event == "ssrc":
            ssrc ^= 1
        body = craft.rtp_packet(sequence, sequence * 160, ssrc=ssrc, payload_type=payload_type,
                                payload=ts_payload[n] if payload_type == 33 else b"\xd5" * 160)
        if event == "odd_header":
            body = rtp_with(sequence, sequence * 160, ssrc, payload_type, n % 2 == 0, n % 3,
                            n % 5 == 0)
        frame = craft.udp_frame("10.0.0.1", "10.0.0.2", 4000, 5004, body)
        if event == "truncate":
            frame = frame[:random.Random(n).randrange(1, len(frame))]
        if event == "corrupt":
            frame = bytearray(frame)
            frame[random.Random(n).randrange(len(frame))] ^= 0xFF
            frame = bytes(frame)
        frames.append((when, frame))
        if event == "duplicate":
            frames.append((when + 0.001, frame))
        if event == "swap" and len(frames) > 2:
            frames[-1], frames[-2] = (frames[-1][0], frames[-2][1]), (frames[-2][0], frames[-1][1])
        sequence += 1
    assert_same(frames, interval_s=interval_s)


ts_events = st.lists(st.sampled_from(["keep"] * 6 + ["drop", "duplicate", "corrupt", "truncate",
                                                     "cc", "pad"]), min_size=1, max_size=300)


@SLOW
@given(ts_events, st.floats(0.05, 0.5), st.booleans())
def test_generated_mpegts_streams(events, psi_interval_s, over_rtp):
    muxer = TsMuxer(psi_interval_s=psi_interval_s, pcr_interval_s=0.03)
    frames = []
    for n, ((datagram, sent), event) in enumerate(zip(muxer.datagrams(len(events)), events)):
        rng = random.Random(n)
        if event == "drop":
            continue
        data = bytearray(datagram)
        if event == "corrupt":
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif event == "cc":
            data[3] = (data[3] & 0xF0) | rng.randrange(16)
        elif event == "truncate":
            del data[rng.randrange(len(data)):]
        elif event == "pad":
            data += b"\x00" * 5
        payload = craft.rtp_packet(n, n * 3000, payload_type=33, payload=bytes(data)) \
            if over_rtp else bytes(data)
        frames.append((100.0 + sent, craft.udp_frame("10.0.0.9", "239.1.1.1", 5000, 1234,
                                                     payload)))
        if event == "duplicate":
            frames.append((100.0 + sent + 1e-4, frames[-1][1]))
    assert_same(frames)


@SLOW
@given(st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]),
                          st.sampled_from([0x02, 0x12, 0x10, 0x18, 0x11, 0x04]),
                          st.integers(0, 3000), st.booleans(), st.booleans(),
                          st.floats(0.0001, 0.05)), max_size=200),
       st.integers(0, 2 ** 32 - 1))
def test_generated_tcp_conversations(steps, first_seq):
    frames, when = [], 5.0
    seq = {"c2s": first_seq, "s2c": (first_seq * 7) & 0xFFFFFFFF}
    for direction, flags, length, retransmit, zero_window, delay in steps:
        when += delay
        other = "s2c" if direction == "c2s" else "c2s"
        start = (seq[direction] - length) & 0xFFFFFFFF if retransmit else seq[direction]
        src, dst, sport, dport = ("10.0.0.1", "10.0.0.2", 40000, 80) if direction == "c2s" \
            else ("10.0.0.2", "10.0.0.1", 80, 40000)
        frames.append((when, craft.tcp_frame(src, dst, sport, dport, start, seq[other], flags,
                                             b"x" * length, window=0 if zero_window else 65535)))
        if not retransmit:
            seq[direction] = (seq[direction] + length) & 0xFFFFFFFF
    assert_same(frames)


def valid_frames() -> list:
    frames = []
    for n in range(20):
        frames.append(craft.udp_frame("10.0.0.1", "10.0.0.2", 4000, 5004,
                                      craft.rtp_packet(n, n * 160), vlan=n % 2 or None))
        ts = b"".join(b"\x47" + bytes([0x01, 0x00, 0x10 | (n % 16)]) + bytes(184)
                      for _ in range(7))
        frames.append(craft.udp_frame("10.0.0.3", "10.0.0.4", 4001, 1234, ts))
        frames.append(craft.tcp_frame("10.0.0.5", "10.0.0.6", 40000, 80, 1000 + n * 100, 5000,
                                      0x18, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        frames.append(craft.udp6_frame("2001:db8::1", "2001:db8::2", 5000, 5004,
                                       craft.rtp_packet(n, n * 160), hop_by_hop=n % 2 == 0))
    return frames


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzzed_frames_decode_alike_and_keep_the_same_table(seed):
    rng = random.Random(seed)
    valid = valid_frames()
    frames, when = [], 1000.0
    for _ in range(20_000):
        frame = mutate_frame(rng, rng.choice(valid)) if rng.random() < 0.7 else \
            rng.choice(valid)
        when += rng.choice([0.0001, 0.001, 0.01])
        frames.append((when, frame))
        assert fast.decode_frame(frame) == reference_decode.decode_frame(frame)
    # a small table: eviction and idle expiry happen, in the same order on both paths
    assert_same(frames, interval_s=0.5, max_flows=50, idle_timeout_s=0.5)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([0x0800, 0x86DD, 0x8100, 0x88A8, 0x0806]))
def test_decode_frame_alike_on_any_bytes(tail, ethertype):
    frame = bytes(12) + struct.pack("!H", ethertype) + tail
    assert fast.decode_frame(frame) == reference_decode.decode_frame(frame)


def test_ticks_time_jumps_and_interval_boundaries_alike():
    voice = [craft.udp_frame("10.0.0.1", "10.0.0.2", 4000, 5004, craft.rtp_packet(i, i * 160))
             for i in range(60)]
    frames = [(1.0 + i * 0.02, f) for i, f in enumerate(voice[:30])]
    frames += [(1.7, None), (2.5, None), (2.6, None)]
    frames += [(500.0 + i * 0.02, f) for i, f in enumerate(voice[30:])]  # a jump in time
    frames += [(502.0, None)]
    assert_same(frames, interval_s=0.25)


def tpacket_block(frames: list, offset: int = 0) -> bytes:
    """A TPACKET_V3 block as the kernel writes it: (sec, nsec, frame) triples."""
    first = 48
    body = bytearray()
    for n, (sec, nsec, frame) in enumerate(frames):
        mac = 32
        step = (mac + len(frame) + 15) // 16 * 16
        header = struct.pack("=IIIIIIHH", step if n < len(frames) - 1 else 0, sec, nsec,
                             len(frame), len(frame), 1, mac, mac)
        body += header + bytes(mac - len(header)) + frame + bytes(step - mac - len(frame))
    block = struct.pack("=IIIIII", 3, 0, 1, len(frames), first, first + len(body))
    return bytes(offset) + block + bytes(first - len(block)) + body


@pytest.mark.parametrize("per_block, interval_s", [(1, 1.0), (7, 0.05), (500, 0.3)])
def test_ring_blocks_read_in_place_give_the_same_records(per_block, interval_s):
    triples = [(1000 + i // 50, (i % 50) * 20_000_000, frame)
               for i, (_, frame) in enumerate(mixed_capture(1500))]
    triples[700:700] = [(1014, 500_000_000, b"\x00" * 9)]  # malformed, counted
    ring = bytearray()
    blocks = []
    for k in range(0, len(triples), per_block):
        blocks.append((ring, len(ring)))
        ring += tpacket_block(triples[k:k + per_block])
        if k % (5 * per_block) == 0:
            blocks.append((None, triples[min(k + per_block, len(triples)) - 1][0] + 0.0))
    pairs = []
    for k in range(0, len(triples), per_block):
        pairs += [(sec + nsec * 1e-9, frame) for sec, nsec, frame in triples[k:k + per_block]]
        if k % (5 * per_block) == 0:
            pairs.append((triples[min(k + per_block, len(triples)) - 1][0] + 0.0, None))
    python, compiled = [], []
    reference = run_frames(iter(pairs), interval_s,
                           lambda batch: python.extend(record_json(r) for r in batch),
                           FlowTable(), ProbeCounters())
    table = fast.FastFlowTable()
    from probes.passive import run_blocks
    counters = run_blocks(iter(blocks), interval_s,
                          lambda batch: compiled.extend(record_json(r) for r in batch), table,
                          ProbeCounters())
    assert compiled == python and len(python) > 3
    assert (counters.frames, dict(counters.malformed), counters.time_jumps) == \
        (reference.frames, dict(reference.malformed), reference.time_jumps)


def test_a_block_that_points_outside_the_ring_is_an_error_not_a_crash():
    ring = bytearray(tpacket_block([(1, 0, craft.udp_frame("10.0.0.1", "10.0.0.2", 1, 2,
                                                           b"x"))]))
    struct.pack_into("=I", ring, 16, 10_000)  # offset of the first frame past the end
    with pytest.raises(ValueError, match="outside the ring"):
        fast.FastFlowTable().feed_block(ring, 0, 0, 1e9, {})


def test_with_ndpi_on_the_kpis_stay_the_reference_s_and_only_the_application_is_added():
    import json
    frames = mixed_capture(3000)
    dns = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00" + \
        struct.pack("!HH", 1, 1)
    frames.insert(10, (0.0095, craft.udp_frame("10.0.0.7", "10.0.0.8", 40000, 53, dns)))
    python, records = [], []
    run_frames(iter(frames), 1.0, lambda batch: python.extend(record_json(r) for r in batch),
               FlowTable(), ProbeCounters())
    table = fast.FastFlowTable(ndpi=True)
    run_frames(iter(frames), 1.0, lambda batch: records.extend(record_json(r) for r in batch),
               table, ProbeCounters())
    named = [json.loads(r) for r in records]
    for record in named:
        record.update(application="", category="", detected_by="")
    assert [json.dumps(r, sort_keys=True) for r in named] == python
    applications = {(json.loads(r)["dport"], json.loads(r)["application"]) for r in records}
    assert (53, "DNS") in applications
    assert 0 < table.ndpi.packets <= 32 * 20  # only each conversation's first packets


def test_every_name_in_the_service_table_is_one_ndpi_knows():
    from qoe.classify import NDPI_APPLICATIONS, NDPI_CATEGORIES
    ndpi = fast.Ndpi()
    assert set(NDPI_APPLICATIONS) <= ndpi.protocol_names()
    assert set(NDPI_CATEGORIES) <= ndpi.category_names()
