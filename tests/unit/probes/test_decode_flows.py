import math
import io

import pytest
from hypothesis import given, settings, strategies as st

from probes import craft, hotpath
from probes import decode as d
from probes.flows import FlowTable
from probes.passive import run_frames
from probes.pcap import PcapError, read_pcap, write_pcap
from probes.tsgen import TsMuxer

SYN, ACK, SYNACK = 0x02, 0x10, 0x12


def test_decode_ipv4_udp_vlan_ipv6_and_tcp():
    packet, reason = d.decode_frame(craft.udp_frame("10.0.0.1", "10.0.0.2", 4000, 5004, b"x" * 10,
                                                    dscp=46, vlan=7))
    assert reason == "" and packet[d.PROTO] == 17 and packet[d.DSCP] == 46
    assert (packet[d.SPORT], packet[d.DPORT], packet[d.PAYLOAD_LEN]) == (4000, 5004, 10)
    assert d.format_address(packet[d.SRC]) == "10.0.0.1"
    packet, _ = d.decode_frame(craft.udp6_frame("fd00::1", "fd00::2", 1, 2, b"abc",
                                                hop_by_hop=True))
    assert d.format_address(packet[d.DST]) == "fd00::2" and packet[d.PAYLOAD_LEN] == 3
    packet, _ = d.decode_frame(craft.tcp_frame("10.0.0.1", "10.0.0.2", 1, 80, 100, 5, ACK, b"hi",
                                               window=0))
    assert (packet[d.TCP_SEQ], packet[d.TCP_ACK], packet[d.TCP_WINDOW]) == (100, 5, 0)


@pytest.mark.parametrize("frame, reason", [
    (b"\x00" * 10, "truncated ethernet"),
    (craft.udp_frame("1.1.1.1", "2.2.2.2", 1, 2, b"")[:20], "truncated ipv4"),
    (craft.MAC_B + craft.MAC_A + b"\x08\x00" + b"\x44" + bytes(19), "bad ipv4 header length"),
    (craft.udp_frame("1.1.1.1", "2.2.2.2", 1, 2, b"")[:38], "truncated udp"),
    (craft.MAC_B + craft.MAC_A + b"\x08\x06" + bytes(28), "not ip"),
])
def test_malformed_frames_give_a_reason(frame, reason):
    assert d.decode_frame(frame) == (None, reason)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([b"\x08\x00", b"\x86\xdd", b"\x81\x00"]))
def test_fuzzed_frames_never_raise(tail, ethertype):
    frame = craft.MAC_B + craft.MAC_A + ethertype + tail
    packet, reason = d.decode_frame(frame)
    assert (packet is None) != (reason == "")
    if packet is not None:
        assert packet[d.PAYLOAD_OFFSET] + packet[d.PAYLOAD_LEN] <= len(frame)


def feed(table, frames):
    for when, frame in frames:
        packet, _ = d.decode_frame(frame)
        table.observe(packet, frame, when)


def test_rtp_flow_kpis_with_loss_and_jitter():
    frames = [(i * 0.02 + (0.004 if i % 2 else 0.0),
               craft.udp_frame("10.0.0.1", "10.0.0.2", 4000, 5004, craft.rtp_packet(i, i * 160)))
              for i in range(100) if i not in (10, 11, 50)]
    table = FlowTable()
    feed(table, frames)
    (record,) = table.records(2.0, final=True)  # the stream ends: every gap is settled
    assert record.kind == "rtp" and record.packets == 97
    assert record.kpis["rtp_lost"] == 3 and record.kpis["rtp_expected"] == 100
    assert record.kpis["rtp_jitter_ms"] == pytest.approx(4.0, rel=0.05)


def test_ts_flow_kpis_with_a_lost_datagram():
    datagrams = TsMuxer().datagrams(300)
    del datagrams[120]
    table = FlowTable()
    feed(table, [(t, craft.udp_frame("10.0.0.9", "239.1.1.1", 5000, 1234, payload))
                 for payload, t in datagrams])
    (record,) = table.records(datagrams[-1][1])
    assert record.kind == "mpegts" and record.kpis["ts_lost_packets"] == 7
    assert record.kpis["mdi_mlr_pps"] > 0 and record.kpis["mdi_df_ms"] > 0


def test_tcp_rtt_retransmissions_and_zero_windows():
    c, s = ("10.0.0.1", 40000), ("10.0.0.2", 80)

    def up(seq, ack, flags, payload=b"", window=65535):
        return craft.tcp_frame(c[0], s[0], c[1], s[1], seq, ack, flags, payload, window)

    def down(seq, ack, flags, payload=b"", window=65535):
        return craft.tcp_frame(s[0], c[0], s[1], c[1], seq, ack, flags, payload, window)

    frames = [(0.000, up(100, 0, SYN)), (0.010, down(500, 101, SYNACK)), (0.030, up(101, 501, ACK)),
              (0.100, up(101, 501, ACK, b"x" * 100)), (0.120, down(501, 201, ACK)),
              (0.200, up(201, 501, ACK, b"y" * 100)), (0.500, up(201, 501, ACK, b"y" * 100)),
              (0.520, down(501, 301, ACK, window=0))]
    table = FlowTable()
    feed(table, frames)
    records = {r.sport: r for r in table.records(1.0)}
    client = records[40000]
    assert client.kind == "tcp" and client.kpis["tcp_handshake_rtt_ms"] == pytest.approx(30.0)
    assert client.kpis["tcp_rtt_ms"] == pytest.approx(20.0)  # Karn: the retransmitted one is out
    assert client.kpis["tcp_retransmissions"] == 1
    assert records[80].kpis["tcp_zero_windows"] == 1


def test_flow_cap_evicts_oldest_and_idle_flows_expire():
    table = FlowTable(max_flows=3, idle_timeout_s=5)
    feed(table, [(float(i), craft.udp_frame("10.0.0.1", "10.0.0.2", 1000 + i, 9, b"z"))
                 for i in range(5)])
    assert len(table) == 3 and table.evicted == 2
    assert {r.sport for r in table.records(5.0)} == {1002, 1003, 1004}
    table.records(8.5)  # idle 6.5 and 5.5 s: gone; idle 4.5 s: kept
    assert len(table) == 1 and table.expired == 2


def test_pcap_round_trip_and_errors():
    frames = [(1.5 + i, craft.udp_frame("10.0.0.1", "10.0.0.2", 1, 2, bytes([i]) * 50))
              for i in range(3)]
    buffer = io.BytesIO()
    write_pcap(buffer, frames)
    buffer.seek(0)
    back = list(read_pcap(buffer))
    assert [(round(t, 6), f) for t, f, _ in back] == frames
    with pytest.raises(PcapError, match="magic"):
        list(read_pcap(io.BytesIO(b"\x0a\x0d\x0d\x0a" + bytes(20))))
    buffer = io.BytesIO()
    write_pcap(buffer, frames)
    with pytest.raises(PcapError, match="truncated"):
        list(read_pcap(io.BytesIO(buffer.getvalue()[:-10])))


def test_cems_probe_passive_on_a_capture(tmp_path):
    import json
    import subprocess
    import sys
    frames = [(100 + i * 0.02, craft.udp_frame("10.0.0.1", "10.0.0.2", 4000, 5004,
                                               craft.rtp_packet(i, i * 160)))
              for i in range(150) if i != 70]
    frames.insert(5, (100.05, b"\x00" * 8))  # a truncated frame is counted, not fatal
    path = tmp_path / "voice.pcap"
    with open(path, "wb") as stream:
        write_pcap(stream, frames)
    out = subprocess.run([sys.executable, "-m", "probes.cli", "passive", "--pcap", str(path)],
                         capture_output=True, text=True, check=True, timeout=60)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(records) == 3  # 3 s of capture, 1 s intervals
    assert sum(r["kpis"]["rtp_lost"] for r in records) == 1
    assert all(r["kind"] == "rtp" and r["dport"] == 5004 for r in records)
    summary = json.loads(out.stderr.strip().splitlines()[-1])
    assert summary == {"source": f"pcap:{path}", "hot_path": hotpath.HOTPATH, "frames": 150,
                       "malformed": {"truncated ethernet": 1}, "flows_evicted": 0,
                       "kernel_received": 0, "kernel_dropped": 0, "time_jumps": 0}


def test_idle_ticks_close_intervals_without_counting_frames():
    frame = craft.udp_frame("10.0.0.1", "10.0.0.2", 4000, 5004, craft.rtp_packet(1, 160))
    batches = []
    counters = run_frames([(10.0, frame), (10.5, None), (11.2, None), (13.1, None)], 1.0,
                          batches.append)
    assert counters.frames == 1 and counters.malformed_total == 0
    # 10-11 holds the frame; 11-12 settles its RTP sequence number (the flow was idle for a
    # whole interval: a record of no packets); 12-13 is empty; the end has nothing left
    assert [len(b) for b in batches] == [1, 1, 0, 0]
    settle = batches[1][0]
    assert (settle.packets, settle.kpis["rtp_expected"], settle.kpis["rtp_lost"]) == (0, 1, 0)


def test_the_callers_table_is_the_one_that_counts_even_when_it_starts_empty():
    table = FlowTable(max_flows=1)
    frames = [(1.0, craft.udp_frame("10.0.0.1", "10.0.0.2", 4000 + i, 5004, b"x" * 20))
              for i in range(3)]
    run_frames(frames, 1.0, lambda records: None, table)
    assert len(table) == 1 and table.evicted == 2


def test_the_mdi_of_a_partial_interval_is_over_the_packets_it_holds():
    datagrams = TsMuxer().datagrams(300)
    table = FlowTable()
    start = datagrams[0][1]
    feed(table, [(t, craft.udp_frame("10.0.0.9", "239.1.1.1", 5000, 1234, payload))
                 for payload, t in datagrams[:40]])
    (partial,) = table.records(start + 10.0)  # a long interval the flow filled only briefly
    table = FlowTable()
    feed(table, [(t, craft.udp_frame("10.0.0.9", "239.1.1.1", 5000, 1234, payload))
                 for payload, t in datagrams])
    (full,) = table.records(datagrams[-1][1])
    assert partial.kpis["mdi_df_ms"] == pytest.approx(full.kpis["mdi_df_ms"], rel=0.5)
    table = FlowTable()
    feed(table, [(t, craft.udp_frame("10.0.0.9", "239.1.1.1", 5000, 1234, payload))
                 for payload, t in datagrams[:2]])
    (two,) = table.records(start + 1.0)
    assert math.isnan(two.kpis["mdi_df_ms"])  # two datagrams: unknown, not 993 ms
    assert two.kpis["ts_crc_errors"] == 0 and "ts_pid_errors" in two.kpis
